"""Train steps: one pure function of (state, batch, rng) -> (state, metrics) per method, jitted by
the caller.

Methods (`config.method`):
  supervised    the left net on labeled images only.
  cps           L = CE(left, y) + CE(right, y) + λ · L_cps on labeled and unlabeled images.
  cps_cutmix    CPS whose unlabeled term is on CutMix-ed images: pseudo labels come from each net's
                predictions on the two source batches, mixed with the same box mask.
  mean_teacher  the left net (student) + an EMA teacher (right); consistency = squared distance of
                softmaxes on unlabeled images, weight ramped up.
  cutmix_seg    Mean Teacher whose student sees CutMix-ed images and the teacher's mixed probabilities.
Ablations: `loss.consistency` = "cps" (hard pseudo labels) or "cpc" (the other net's probabilities,
CCT-style); `loss.cps_on` = "both" | "labeled" | "unlabeled" (which images the cross term covers).
`loss.cps_reduction` combines the labeled and unlabeled cross terms:
  "mean" (default, the reference code): one mean over the concatenated labeled + unlabeled pixels;
  "sum"  (the paper's formula):         L_cps^l + L_cps^u, each a mean over its own pixels.
"""

import functools

import jax
import jax.numpy as jnp
import optax

from cps_jax import augment, cutmix, losses, pseudo_labels
from cps_jax.state import RIGHT_ROLE, NetState, TrainState, apply_net

METHODS = tuple(RIGHT_ROLE)
CUTMIX_METHODS = ("cps_cutmix", "cutmix_seg")


def uses_unlabeled(method: str) -> bool:
    return method != "supervised"


def uses_two_unlabeled(method: str) -> bool:
    """CutMix mixes two independently shuffled unlabeled batches."""
    return method in CUTMIX_METHODS


def supervised_loss_fn(loss_config):
    if loss_config.supervised == "ce":
        return losses.cross_entropy
    if loss_config.supervised == "ohem":
        return functools.partial(
            losses.ohem_cross_entropy,
            threshold=loss_config.ohem_threshold,
            min_kept=loss_config.ohem_min_kept,
        )
    raise ValueError(
        f"config.loss.supervised must be 'ce' or 'ohem', got {loss_config.supervised!r}"
    )


REMAT_POLICIES = {
    "none": None,
    # Keep only the forward's inputs; the backward pass recomputes the whole net (+1 forward).
    "full": jax.checkpoint_policies.nothing_saveable,
    # Keep matmul outputs (convs under conv_impl "patches"), recompute the cheap elementwise ops.
    "dots": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
}


def net_fn(graphdef, remat: str = "none"):
    """apply_net for `graphdef`, rematerialised in the backward pass as `remat` says."""
    if remat not in REMAT_POLICIES:
        raise ValueError(f"config.remat must be one of {tuple(REMAT_POLICIES)}, got {remat!r}")
    fn = functools.partial(apply_net, graphdef)
    if remat == "none":
        return fn
    policy = REMAT_POLICIES[remat]

    def apply(params, batch_stats, images, *, train: bool):
        return jax.checkpoint(functools.partial(fn, train=train), policy=policy)(
            params, batch_stats, images
        )

    return apply


def run_net(apply, params, batch_stats, images: list, *, train: bool, joint_bn: bool):
    """Logits for each image batch in `images`. Separate forward calls (the reference) normalise each
    batch with its own BN statistics; `joint_bn` uses one call over their concatenation."""
    if joint_bn and len(images) > 1:
        logits, batch_stats = apply(params, batch_stats, jnp.concatenate(images), train=train)
        bounds = [sum(x.shape[0] for x in images[:i]) for i in range(1, len(images))]
        return jnp.split(logits, bounds), batch_stats
    outputs = []
    for x in images:
        logits, batch_stats = apply(params, batch_stats, x, train=train)
        outputs.append(logits)
    return outputs, batch_stats


def run_pair(run, params: dict, stats: dict, images: list, *, train: bool, fuse: bool):
    """Both nets ("left", "right") on the same image batches -> ({net: [logits per batch]},
    {net: new batch_stats}). `fuse` stacks the two nets' trees and runs them as one vmapped
    program: one batched matmul per layer instead of two, the same numbers."""
    nets = ("left", "right")
    if not fuse:
        out = {net: run(params[net], stats[net], images, train=train) for net in nets}
        return {net: o[0] for net, o in out.items()}, {net: o[1] for net, o in out.items()}
    stack = lambda *trees: jax.tree.map(lambda *leaves: jnp.stack(leaves), *trees)
    logits, new_stats = jax.vmap(lambda p, s: run(p, s, images, train=train))(
        stack(*(params[n] for n in nets)), stack(*(stats[n] for n in nets))
    )
    return (
        {net: [x[i] for x in logits] for i, net in enumerate(nets)},
        {net: jax.tree.map(lambda leaf, i=i: leaf[i], new_stats) for i, net in enumerate(nets)},
    )


def combine_cps(cps_l, cps_u, n_l: int, n_u: int, reduction: str) -> jax.Array:
    """Labeled and unlabeled cross terms (None = not applied) -> one term, as `reduction` says."""
    parts = [(v, n) for v, n in ((cps_l, n_l), (cps_u, n_u)) if v is not None]
    if reduction == "mean":
        return sum(v * n for v, n in parts) / sum(n for _, n in parts)
    if reduction == "sum":
        return sum(v for v, _ in parts)
    raise ValueError(f"config.loss.cps_reduction must be 'mean' or 'sum', got {reduction!r}")


class Consistency:
    """The cross term between the two nets: hard pseudo labels (cps) or probabilities (cpc)."""

    def __init__(self, kind: str):
        if kind not in ("cps", "cpc"):
            raise ValueError(f"config.loss.consistency must be 'cps' or 'cpc', got {kind!r}")
        self.kind = kind

    def pair(self, left_logits, right_logits):
        if self.kind == "cps":
            return losses.cps_loss(left_logits, right_logits)
        return losses.cpc_loss(left_logits, right_logits)

    def mixed_target(self, logits_0, logits_1, mask):
        """A net's target for a mixed image, from its predictions on the two source images."""
        if self.kind == "cps":
            return losses.pseudo_labels(cutmix.mix(logits_0, logits_1, mask))
        probs = [jax.nn.softmax(x.astype(jnp.float32)) for x in (logits_0, logits_1)]
        return jax.lax.stop_gradient(cutmix.mix(probs[0], probs[1], mask))

    def to_target(self, logits, target):
        if self.kind == "cps":
            return losses.cross_entropy(logits, target)
        return losses.probability_mse(logits, target)


def sigmoid_rampup(step, rampup_steps: int) -> jax.Array:
    """exp(-5 (1 - t)^2) for t = step / rampup_steps < 1, then 1 (Laine & Aila; Mean Teacher)."""
    if rampup_steps <= 0:
        return jnp.asarray(1.0)
    t = jnp.clip(step / rampup_steps, 0.0, 1.0)
    return jnp.exp(-5.0 * jnp.square(1.0 - t))


def ema_update(teacher, student, decay: float):
    """teacher <- decay * teacher + (1 - decay) * student, leaf by leaf."""
    return jax.tree.map(lambda t, s: decay * t + (1.0 - decay) * s, teacher, student)


def cps_weight_schedule(loss_config, total_steps: int):
    """step -> λ: 0 during the first `warmup_fraction` of training (supervised only), then ramped
    up over the next `cps_rampup_fraction` (sigmoid, as Mean Teacher), then `cps_weight`.
    Fractions of `total_steps`, so an override of the run's length moves them along."""
    weight = loss_config.cps_weight
    for field in ("warmup_fraction", "cps_rampup_fraction"):
        if not 0.0 <= loss_config[field] < 1.0:
            raise ValueError(f"config.loss.{field} must be in [0, 1), got {loss_config[field]}")
    warmup = round(loss_config.warmup_fraction * total_steps)
    rampup = round(loss_config.cps_rampup_fraction * total_steps)

    def schedule(step):
        after = jnp.maximum(step - warmup, 0)
        return jnp.where(step >= warmup, weight * sigmoid_rampup(after, rampup), 0.0)

    return schedule


def make_loss_fn(graphdef, config):
    """loss(params, batch_stats, frozen, extra, batch, draws, step) -> (loss, aux) with aux =
    (metrics, new batch_stats, new extra, pseudo): `pseudo` lists the unlabeled targets of the
    step (pseudo_labels.Pseudo, one per net) for the diagnostics.

    `params` holds the trained nets, `frozen` the teacher's params (no gradient); `batch_stats`
    every net's BN statistics; `extra` the running class shares of pseudo.balance="align";
    `draws` the step's random draws for CutMix methods: {"masks": box masks, "strong": a key for
    the student's colour perturbation}, else None."""
    method, loss_config = config.method, config.loss
    supervised = supervised_loss_fn(loss_config)
    consistency = Consistency(loss_config.consistency)
    options = pseudo_labels.Options.from_config(config.pseudo)
    augment.check(config.strong)
    cps_weight = cps_weight_schedule(loss_config, config.total_steps)
    cps_on = loss_config.cps_on
    if cps_on not in ("both", "labeled", "unlabeled"):
        raise ValueError(
            f"config.loss.cps_on must be 'both', 'labeled' or 'unlabeled', got {cps_on!r}"
        )
    apply = net_fn(graphdef, config.remat)
    run = functools.partial(run_net, apply, joint_bn=bool(loss_config.joint_bn))
    pair = functools.partial(run_pair, run, fuse=bool(config.fuse_pair))
    other = {"left": "right", "right": "left"}

    def cross_term(logits, targets):
        """Each net's CE against the other net's targets, summed over the two nets."""
        return sum(
            losses.cross_entropy(
                logits[net],
                targets[other[net]].labels,
                None if options.is_plain else targets[other[net]].weight,
            )
            for net in logits
        )

    def cps(params, stats, extra, batch, draws, step):
        masks, strong_key = (draws or {}).get("masks"), (draws or {}).get("strong")
        x_l, y = batch["image_l"], batch["mask_l"]
        prior = extra.get("prior", {})
        select = lambda logits, net: pseudo_labels.select(logits, options, prior.get(net))
        if method == "cps":
            out, new_stats = pair(params, stats, [x_l, batch["image_u"]], train=True)
            logits = {(net, part): out[net][i] for net in out for i, part in enumerate("lu")}
            unlabeled = {net: logits[net, "u"] for net in out}
            predicted = unlabeled  # what the running class shares of "align" follow
            targets_u = {net: select(unlabeled[net], net) for net in out}
        else:  # cps_cutmix
            u0, u1 = batch["image_u"], batch["image_u1"]
            # The nets learn on a harder view than their targets came from: mixed, and (with
            # config.strong) colour-perturbed.
            mixed = augment.strong_view(cutmix.mix(u0, u1, masks), strong_key, config.strong)
            bn_train = loss_config.cutmix_pseudo_bn == "train"
            # Pseudo-label passes: no gradient; BN in train mode as the reference (by default).
            frozen = jax.lax.stop_gradient(params)
            pseudo, pseudo_stats = pair(frozen, stats, [u0, u1], train=bn_train)
            out, new_stats = pair(
                params, pseudo_stats if bn_train else stats, [x_l, mixed], train=True
            )
            logits = {(net, part): out[net][i] for net in out for i, part in enumerate("lu")}
            unlabeled = {net: logits[net, "u"] for net in out}
            predicted = {net: jnp.concatenate(pseudo[net]) for net in out}
            targets_u = {net: select(cutmix.mix(*pseudo[net], masks), net) for net in out}
        if consistency.kind == "cpc":  # probabilities, no pseudo labels: remedies do not apply
            cps_u = (
                consistency.pair(unlabeled["left"], unlabeled["right"])
                if method == "cps"
                else sum(
                    consistency.to_target(unlabeled[net], consistency.mixed_target(*pseudo[o], masks))
                    for net, o in other.items()
                )
            )
            cps_l = consistency.pair(logits["left", "l"], logits["right", "l"])
        else:
            cps_u = cross_term(unlabeled, targets_u)
            labeled = {net: logits[net, "l"] for net in out}
            cps_l = cross_term(labeled, {net: select(labeled[net], net) for net in out})
        cps_u = cps_u if cps_on != "labeled" else None
        cps_l = cps_l if cps_on != "unlabeled" else None
        sup_left = supervised(logits["left", "l"], y)
        sup_right = supervised(logits["right", "l"], y)
        n_l, n_u = x_l.shape[0], batch["image_u"].shape[0]
        cross = combine_cps(cps_l, cps_u, n_l, n_u, loss_config.cps_reduction)
        weight = cps_weight(step)
        loss = sup_left + sup_right + weight * cross
        metrics = dict(loss=loss, sup_left=sup_left, sup_right=sup_right, cps=cross)
        metrics.update({k: v for k, v in (("cps_l", cps_l), ("cps_u", cps_u)) if v is not None})
        metrics["cps_weight"] = weight
        new_extra = dict(extra)
        if prior:
            new_extra["prior"] = {
                net: pseudo_labels.update_prior(
                    prior[net], y, predicted[net], options.align_momentum
                )
                for net in prior
            }
        return loss, (metrics, new_stats, new_extra, [targets_u["left"], targets_u["right"]])

    def supervised_only(params, stats, extra, batch, draws, step):
        (logits,), new_left = run(params["left"], stats["left"], [batch["image_l"]], train=True)
        loss = supervised(logits, batch["mask_l"])
        return loss, (dict(loss=loss, sup_left=loss), {"left": new_left}, extra, [])

    def teacher_student(params, stats, frozen, extra, batch, draws, step):
        masks = (draws or {}).get("masks")
        x_l, y = batch["image_l"], batch["mask_l"]
        teacher = functools.partial(run, frozen["right"], stats["right"], train=False)
        if method == "mean_teacher":
            (target_logits,), _ = teacher([batch["image_u"]])
            target = jax.nn.softmax(target_logits.astype(jnp.float32))
            student_u = batch["image_u"]
        else:  # cutmix_seg: the student sees the mix, the teacher's probabilities are mixed alike
            u0, u1 = batch["image_u"], batch["image_u1"]
            (t0, t1), _ = teacher([u0, u1])
            target = cutmix.mix(
                jax.nn.softmax(t0.astype(jnp.float32)),
                jax.nn.softmax(t1.astype(jnp.float32)),
                masks,
            )
            student_u = cutmix.mix(u0, u1, masks)
        (logits_l, logits_u), new_left = run(
            params["left"], stats["left"], [x_l, student_u], train=True
        )
        sup = supervised(logits_l, y)
        cons = losses.probability_mse(logits_u, target)
        weight = loss_config.consistency_weight * sigmoid_rampup(
            step, loss_config.consistency_rampup_steps
        )
        loss = sup + weight * cons
        metrics = dict(loss=loss, sup_left=sup, consistency=cons, consistency_weight=weight)
        # The teacher's target, seen as hard labels, for the diagnostics.
        shown = pseudo_labels.Pseudo(
            labels=jnp.argmax(target, -1).astype(jnp.int32),
            confidence=jnp.max(target, -1),
            weight=jnp.ones(target.shape[:-1], jnp.float32),
        )
        return loss, (metrics, {"left": new_left, "right": stats["right"]}, extra, [shown])

    if method in ("cps", "cps_cutmix"):
        return lambda params, stats, frozen, *args: cps(params, stats, *args)
    if method == "supervised":
        return lambda params, stats, frozen, *args: supervised_only(params, stats, *args)
    if method in ("mean_teacher", "cutmix_seg"):
        return teacher_student
    raise ValueError(f"config.method: {method!r} is not one of {METHODS}")


def unlabeled_truth(batch, masks):
    """The hidden masks of the images the unlabeled targets are for (mixed alike for CutMix)."""
    if "mask_u" not in batch:
        return None
    if masks is None:
        return batch["mask_u"]
    return jnp.where(masks > 0.5, batch["mask_u1"], batch["mask_u"])


def make_train_step(graphdef, config, tx: optax.GradientTransformation, lr_schedule):
    """Builds step(state, batch, rng) -> (state, metrics).

    batch: image_l [N,H,W,3] f32, mask_l [N,H,W] i32, and for semi-supervised methods image_u
    [M,H,W,3] (and image_u1 for CutMix methods); optionally mask_u (and mask_u1), the hidden masks
    of the unlabeled images, which no loss reads: with them, metrics["pseudo"] holds the
    pseudo-label diagnostic counts (pseudo_labels.diagnostic_counts).
    """
    method = config.method
    loss_fn = make_loss_fn(graphdef, config)
    trained = ("left", "right") if RIGHT_ROLE.get(method) == "net" else ("left",)
    has_teacher = RIGHT_ROLE.get(method) == "teacher"

    def step(state: TrainState, batch, rng):
        nets = {name: getattr(state, name) for name in ("left", "right")}
        nets = {name: net for name, net in nets.items() if net is not None}
        params = {name: nets[name].params for name in trained}
        frozen = {name: net.params for name, net in nets.items() if name not in trained}
        stats = {name: net.batch_stats for name, net in nets.items()}
        draws = masks = None
        if uses_two_unlabeled(method):
            _, h, w, _ = batch["image_u"].shape
            rng_key = jax.random.wrap_key_data(rng)
            masks = cutmix.box_masks(rng_key, batch["image_u"].shape[0], h, w, config.cutmix)
            draws = {"masks": masks, "strong": jax.random.fold_in(rng_key, 1)}
        grads, (metrics, new_stats, new_extra, pseudo) = jax.grad(loss_fn, has_aux=True)(
            params, stats, frozen, state.extra, batch, draws, state.step
        )

        def update(net: NetState, grad, batch_stats):
            updates, opt_state = tx.update(grad, net.opt_state, net.params)
            return NetState(
                params=optax.apply_updates(net.params, updates),
                batch_stats=batch_stats,
                opt_state=opt_state,
            )

        new = {name: update(nets[name], grads[name], new_stats[name]) for name in trained}
        if has_teacher:
            decay = config.loss.ema_decay
            new["right"] = NetState(
                params=ema_update(nets["right"].params, new["left"].params, decay),
                batch_stats=ema_update(nets["right"].batch_stats, new["left"].batch_stats, decay),
                opt_state=None,
            )
        new_state = TrainState(
            step=state.step + 1, left=new["left"], right=new.get("right"), extra=new_extra
        )
        metrics["lr"] = lr_schedule(state.step)
        metrics["grad_norm"] = optax.tree.norm(grads)
        truth = unlabeled_truth(batch, masks)
        if pseudo and truth is not None:
            num_classes = params["left"]["classifier"]["kernel"].shape[-1]
            # Sums, added up between log steps on the device: no host sync per step.
            metrics["pseudo"] = pseudo_labels.diagnostic_counts(pseudo, truth, num_classes)
        return new_state, metrics

    return step
