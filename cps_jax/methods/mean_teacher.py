"""Mean Teacher (Tarvainen & Valpola 2017) and CutMix-Seg (French et al. 2020): a student (left)
and its EMA teacher (right).

The student learns the labels and, on unlabeled images, the teacher's probabilities (squared
distance of softmaxes, weight `consistency_weight` ramped up over `consistency_rampup_steps`).
CutMix-Seg: the student sees CutMix-ed images, the teacher's probabilities on the two source
batches are mixed alike. After each update the teacher moves towards the student
(`config.loss.ema_decay`), its BN statistics included.
"""

import functools

import jax
import jax.numpy as jnp

from cps_jax import cutmix, losses, pseudo_labels
from cps_jax.methods.base import Aux, Method, register
from cps_jax.methods.cps import cutmix_draws
from cps_jax.methods.terms import sigmoid_rampup, supervised_loss_fn


def teacher_student_loss(tools, config, *, mixed: bool):
    supervised = supervised_loss_fn(config.loss)
    loss_config = config.loss

    def loss(params, stats, frozen, extra, batch, draws, step):
        teacher = functools.partial(tools.run, frozen["right"], stats["right"], train=False)
        if mixed:
            u0, u1, masks = batch["image_u"], batch["image_u1"], draws["masks"]
            (t0, t1), _ = teacher([u0, u1])
            target = cutmix.mix(_softmax(t0), _softmax(t1), masks)
            student_u = cutmix.mix(u0, u1, masks)
        else:
            (target_logits,), _ = teacher([batch["image_u"]])
            target, student_u = _softmax(target_logits), batch["image_u"]
        (logits_l, logits_u), new_left = tools.run(
            params["left"], stats["left"], [batch["image_l"], student_u], train=True
        )
        sup = supervised(logits_l, batch["mask_l"])
        consistency = losses.probability_mse(logits_u, target)
        weight = loss_config.consistency_weight * sigmoid_rampup(
            step, loss_config.consistency_rampup_steps
        )
        value = sup + weight * consistency
        metrics = dict(
            loss=value, sup_left=sup, consistency=consistency, consistency_weight=weight
        )
        new_stats = {"left": new_left, "right": stats["right"]}  # the hook moves the teacher's
        return value, Aux(metrics, new_stats, extra, [pseudo_labels.from_probabilities(target)])

    return loss


def _softmax(logits):
    return jax.nn.softmax(logits.astype(jnp.float32))


def ema_update(teacher, student, decay: float):
    """teacher <- decay * teacher + (1 - decay) * student, leaf by leaf."""
    return jax.tree.map(lambda t, s: decay * t + (1.0 - decay) * s, teacher, student)


def ema_teacher(config):
    """nets -> nets with the teacher (right) moved towards the updated student (left)."""
    decay = config.loss.ema_decay
    return lambda nets, step: dict(nets, right=ema_update(nets["right"], nets["left"], decay))


TEACHER = dict(
    nets=("left", "right"), trained=("left",), copies={"right": "left"}, after_update=ema_teacher
)
MEAN_TEACHER = register(
    Method(
        "mean_teacher",
        streams=("l", "u"),
        make_loss=functools.partial(teacher_student_loss, mixed=False),
        **TEACHER,
    )
)
CUTMIX_SEG = register(
    Method(
        "cutmix_seg",
        streams=("l", "u", "u1"),
        make_loss=functools.partial(teacher_student_loss, mixed=True),
        draws=cutmix_draws,
        **TEACHER,
    )
)
