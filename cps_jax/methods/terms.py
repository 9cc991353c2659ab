"""Loss pieces more than one method uses: the supervised loss of `config.loss.supervised`, and
the sigmoid ramp-up of a consistency weight."""

import functools

import jax
import jax.numpy as jnp

from cps_jax import losses

SUPERVISED_LOSSES = ("ce", "ohem")


def supervised_loss_fn(loss_config):
    """(logits, labels) -> the labeled images' loss: cross-entropy, or OHEM cross-entropy."""
    if loss_config.supervised == "ce":
        return losses.cross_entropy
    if loss_config.supervised == "ohem":
        return functools.partial(
            losses.ohem_cross_entropy,
            threshold=loss_config.ohem_threshold,
            min_kept=loss_config.ohem_min_kept,
        )
    raise ValueError(
        f"config.loss.supervised must be one of {SUPERVISED_LOSSES}, got {loss_config.supervised!r}"
    )


def sigmoid_rampup(step, rampup_steps: int) -> jax.Array:
    """exp(-5 (1 - t)^2) for t = step / rampup_steps < 1, then 1 (Laine & Aila; Mean Teacher)."""
    if rampup_steps <= 0:
        return jnp.asarray(1.0)
    t = jnp.clip(step / rampup_steps, 0.0, 1.0)
    return jnp.exp(-5.0 * jnp.square(1.0 - t))
