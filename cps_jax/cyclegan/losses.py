"""CycleGAN's losses as pure functions, as the official code computes them (its GANLoss in
"lsgan" mode is an MSE against a tensor of ones or zeros; its cycle and identity criteria are
L1Loss): every term is a mean over all elements, in float32 or wider.
"""

import jax
import jax.numpy as jnp

CYCLE_WEIGHT = 10.0  # the paper's lambda
IDENTITY_WEIGHT = 0.5 * CYCLE_WEIGHT


def _f32(x: jax.Array) -> jax.Array:
    return x.astype(jnp.promote_types(x.dtype, jnp.float32))


def mse_to(pred: jax.Array, target: float) -> jax.Array:
    """mean((pred - target)^2): LS-GAN's criterion against the label `target` (1 real, 0 fake)."""
    return jnp.mean(jnp.square(_f32(pred) - target))


def lsgan_discriminator_loss(pred_real: jax.Array, pred_fake: jax.Array) -> jax.Array:
    """0.5 * (MSE(D(real), 1) + MSE(D(fake), 0)): the half slows D relative to G (the paper)."""
    return 0.5 * (mse_to(pred_real, 1.0) + mse_to(pred_fake, 0.0))


def lsgan_generator_loss(pred_fake: jax.Array) -> jax.Array:
    """MSE(D(G(x)), 1): the generator wants its images judged real."""
    return mse_to(pred_fake, 1.0)


def l1(a: jax.Array, b: jax.Array) -> jax.Array:
    """mean |a - b| (PyTorch's L1Loss)."""
    return jnp.mean(jnp.abs(_f32(a) - _f32(b)))


def cycle_loss(reconstructed: jax.Array, original: jax.Array, weight: float = CYCLE_WEIGHT):
    """lambda * mean |F(G(x)) - x| (one direction; the total adds both)."""
    return weight * l1(reconstructed, original)


def identity_loss(same: jax.Array, original: jax.Array, weight: float = IDENTITY_WEIGHT):
    """0.5 lambda * mean |G(y) - y|: a generator fed its own output domain should leave it
    alone, which keeps colours (the paper's paintings <-> photos)."""
    return weight * l1(same, original)
