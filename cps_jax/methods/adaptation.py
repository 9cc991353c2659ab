"""Synthetic to real: a labeled source domain (the "l" stream, `config.data.source`) and an
unlabeled target (the "u" stream; validation on the target). CPS, Mean Teacher and the rest run
across domains as they are; the methods here are the adaptation ones.

`source_only`: the supervised net on the source alone, the row every adaptation method is
measured against.

`minent` (ADVENT's entropy minimisation, Vu et al. 2019): L = CE(source) + λ_ent · mean over the
target's pixels of the normalised entropy I = −Σ_c p_c log p_c / log C (`adapt.entropy_weight`,
1e-3 in the paper).

`dacs` (Tranheden et al. 2021): an EMA teacher (right; α_t = min(1 − 1/(t+1), `adapt.ema_max`))
pseudo-labels the target; ClassMix pastes half of each source image's classes onto a target
image, labels alike; target pixels weigh the share of the teacher's pixels whose confidence is
above `adapt.confidence` (0.968), pasted pixels 1: L = CE(source) + CE(mixed, weighted).
"""

import jax
import jax.numpy as jnp

from cps_jax import augment, losses, pseudo_labels
from cps_jax.methods.base import Aux, Method, register
from cps_jax.methods.mean_teacher import ema_update
from cps_jax.methods.supervised import supervised_loss
from cps_jax.methods.terms import supervised_loss_fn


def normalized_entropy(logits) -> jax.Array:
    """Per pixel −Σ_c p_c log p_c / log C, in [0, 1]: [N, H, W]."""
    logits = losses.at_least_f32(logits)
    log_p = jax.nn.log_softmax(logits, axis=-1)
    return -jnp.sum(jnp.exp(log_p) * log_p, axis=-1) / jnp.log(logits.shape[-1])


def entropy_loss(logits) -> jax.Array:
    """ADVENT's entropy loss: the mean normalised entropy over all pixels."""
    return jnp.mean(normalized_entropy(logits))


def minent_loss(tools, config):
    supervised = supervised_loss_fn(config.loss)
    weight = float(config.adapt.entropy_weight)

    def loss(params, stats, frozen, extra, batch, draws, step):
        (source, target), new_stats = tools.run(
            params["left"], stats["left"], [batch["image_l"], batch["image_u"]], train=True
        )
        sup = supervised(source, batch["mask_l"])
        entropy = entropy_loss(target)
        value = sup + weight * entropy
        pseudo = pseudo_labels.select(target, pseudo_labels.Options())
        metrics = dict(loss=value, sup_left=sup, entropy=entropy)
        return value, Aux(metrics, {"left": new_stats}, extra, [pseudo])

    return loss


# --- DACS -----------------------------------------------------------------------------------


def choose_half(key, present) -> jax.Array:
    """Per image, ceil(n/2) of its n present classes (`present` [N, C] bool), drawn uniformly
    without replacement: [N, C] bool."""
    scores = jnp.where(present, jax.random.uniform(key, present.shape), 2.0)
    rank = jnp.argsort(jnp.argsort(scores, axis=-1), axis=-1)
    count = (present.sum(-1, keepdims=True) + 1) // 2
    return present & (rank < count)


def classmix_mask(labels, chosen) -> jax.Array:
    """1 where a source pixel's label is one of its image's `chosen` classes ([N, C] bool), else
    0 (ignored pixels never pasted): [N, H, W] float32."""
    num_classes = chosen.shape[-1]
    valid = (labels >= 0) & (labels < num_classes)
    picked = jnp.take_along_axis(
        chosen, jnp.where(valid, labels, 0).reshape(labels.shape[0], -1), axis=1
    ).reshape(labels.shape)
    return (valid & picked).astype(jnp.float32)


def dacs_draws(config, batch, key):
    """Which classes of each source image are pasted (among those of its mask, `classes_l`), and a
    key for the strong view."""
    present = jnp.asarray(batch["classes_l"]).astype(bool)
    return {"chosen": choose_half(key, present), "strong": jax.random.fold_in(key, 1)}


def dacs_loss(tools, config):
    supervised = supervised_loss_fn(config.loss)
    confidence = float(config.adapt.confidence)
    augment.check(config.strong)

    def loss(params, stats, frozen, extra, batch, draws, step):
        source, target = batch["image_l"], batch["image_u"]
        n = min(source.shape[0], target.shape[0])
        (teacher_logits,), _ = tools.run(frozen["right"], stats["right"], [target], train=False)
        teacher = pseudo_labels.select(teacher_logits, pseudo_labels.Options())
        mask = classmix_mask(batch["mask_l"][:n], draws["chosen"][:n])
        m = mask[..., None]
        mixed = augment.strong_view(source[:n] * m + target[:n] * (1 - m), draws["strong"], config.strong)
        labels = jnp.where(mask > 0.5, batch["mask_l"][:n], teacher.labels[:n])
        # The share of confident teacher pixels, per target image.
        share = jnp.mean((teacher.confidence[:n] > confidence).astype(jnp.float32), axis=(1, 2))
        weights = jnp.where(mask > 0.5, 1.0, share[:, None, None])
        (source_logits, mixed_logits), new_left = tools.run(
            params["left"], stats["left"], [source, mixed], train=True
        )
        sup = supervised(source_logits, batch["mask_l"])
        nll, valid = losses.pixel_cross_entropy(mixed_logits, labels)
        mix = jnp.sum(nll * weights) / jnp.maximum(valid.sum(), 1)
        value = sup + mix
        metrics = dict(loss=value, sup_left=sup, mix=mix, confident_share=share.mean())
        new_stats = {"left": new_left, "right": stats["right"]}
        return value, Aux(metrics, new_stats, extra, [teacher])

    return loss


def dacs_teacher(config):
    """nets -> nets with the teacher (right) at α_t = min(1 − 1/(t+1), ema_max) of itself."""
    ema_max = float(config.adapt.ema_max)

    def hook(nets, step):
        alpha = jnp.minimum(1.0 - 1.0 / (step + 1.0), ema_max)
        return dict(nets, right=ema_update(nets["right"], nets["left"], alpha))

    return hook


SOURCE_ONLY = register(
    Method("source_only", nets=("left",), trained=("left",), streams=("l",), make_loss=supervised_loss)
)
MINENT = register(
    Method("minent", nets=("left",), trained=("left",), streams=("l", "u"), make_loss=minent_loss)
)
DACS = register(
    Method(
        "dacs",
        nets=("left", "right"),
        trained=("left",),
        copies={"right": "left"},
        streams=("l", "u"),
        make_loss=dacs_loss,
        after_update=dacs_teacher,
        draws=dacs_draws,
    )
)
