"""The CPS train step: one pure function of (state, batch, rng) -> (state, metrics), jitted by the caller.

L = CE(left, y) + CE(right, y) + λ · L_cps, with L_cps over labeled and unlabeled images.
`loss.cps_reduction` picks how the two parts combine:
  "mean" (default, the reference code): one mean over the concatenated labeled + unlabeled pixels;
  "sum"  (the paper's formula):         L_cps^l + L_cps^u, each a mean over its own pixels.
"""

import functools

import jax
import jax.numpy as jnp
import optax

from cps_jax import losses
from cps_jax.state import NetState, TrainState, apply_net


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


def forward_pair_member(graphdef, params, batch_stats, images_l, images_u, *, joint_bn: bool):
    """Logits on labeled and unlabeled images; separate forward calls keep separate BN batch statistics."""
    if joint_bn:
        logits, batch_stats = apply_net(
            graphdef, params, batch_stats, jnp.concatenate([images_l, images_u]), train=True
        )
        return logits[: images_l.shape[0]], logits[images_l.shape[0] :], batch_stats
    logits_l, batch_stats = apply_net(graphdef, params, batch_stats, images_l, train=True)
    logits_u, batch_stats = apply_net(graphdef, params, batch_stats, images_u, train=True)
    return logits_l, logits_u, batch_stats


def combine_cps(
    cps_l: jax.Array, cps_u: jax.Array, n_l: int, n_u: int, reduction: str
) -> jax.Array:
    if reduction == "mean":
        return (cps_l * n_l + cps_u * n_u) / (n_l + n_u)
    if reduction == "sum":
        return cps_l + cps_u
    raise ValueError(f"config.loss.cps_reduction must be 'mean' or 'sum', got {reduction!r}")


def make_train_step(graphdef, config, tx: optax.GradientTransformation, lr_schedule):
    """Builds step(state, batch, rng) -> (state, metrics).

    batch: image_l [N,H,W,3] f32, mask_l [N,H,W] i32, image_u [M,H,W,3] f32.
    """
    supervised_loss = supervised_loss_fn(config.loss)
    cps_weight = float(config.loss.cps_weight)
    reduction = config.loss.cps_reduction
    joint_bn = bool(config.loss.joint_bn)

    def loss_fn(params, batch_stats, batch):
        run = functools.partial(
            forward_pair_member,
            graphdef,
            images_l=batch["image_l"],
            images_u=batch["image_u"],
            joint_bn=joint_bn,
        )
        left_l, left_u, left_stats = run(params["left"], batch_stats["left"])
        right_l, right_u, right_stats = run(params["right"], batch_stats["right"])
        sup_left = supervised_loss(left_l, batch["mask_l"])
        sup_right = supervised_loss(right_l, batch["mask_l"])
        cps_l = losses.cps_loss(left_l, right_l)
        cps_u = losses.cps_loss(left_u, right_u)
        cps = combine_cps(cps_l, cps_u, left_l.shape[0], left_u.shape[0], reduction)
        loss = sup_left + sup_right + cps_weight * cps
        metrics = dict(loss=loss, sup_left=sup_left, sup_right=sup_right, cps_l=cps_l, cps_u=cps_u)
        return loss, (metrics, {"left": left_stats, "right": right_stats})

    def step(state: TrainState, batch, rng):
        del rng  # CPS without CutMix draws no randomness inside the step.
        params = {"left": state.left.params, "right": state.right.params}
        stats = {"left": state.left.batch_stats, "right": state.right.batch_stats}
        grads, (metrics, new_stats) = jax.grad(loss_fn, has_aux=True)(params, stats, batch)

        def update(net: NetState, grad, batch_stats):
            updates, opt_state = tx.update(grad, net.opt_state, net.params)
            return NetState(
                params=optax.apply_updates(net.params, updates),
                batch_stats=batch_stats,
                opt_state=opt_state,
            )

        new_state = TrainState(
            step=state.step + 1,
            left=update(state.left, grads["left"], new_stats["left"]),
            right=update(state.right, grads["right"], new_stats["right"]),
        )
        metrics["lr"] = lr_schedule(state.step)
        metrics["grad_norm"] = optax.tree.norm(grads)
        return new_state, metrics

    return step
