"""Photometric augmentation of the student's view, as jitted array ops (`config.strong`).

Semi-supervised methods learn most where the net that is trained sees a harder view of an image
than the one its target came from (FixMatch, UniMatch). With CutMix the targets come from the
un-mixed unlabeled images; this module perturbs the colours of the mixed images the nets then
predict with gradient: per image, brightness, contrast and saturation factors drawn from
U(1 - s, 1 + s) (s = `color_jitter`), and greyscale with probability `grayscale_p`. Layout and
labels are unchanged, so the mixed pseudo labels stay valid. All off (0) by default.

Images arrive normalised ((x - mean) / std, ImageNet statistics); the ops run on [0, 1] pixels
and normalise back. Padded crop regions (0 after normalising) are perturbed like the rest.
"""

import jax
import jax.numpy as jnp

from cps_jax.data.transforms import IMAGENET_MEAN, IMAGENET_STD

# ITU-R BT.601 luma weights (as torchvision's rgb_to_grayscale).
_LUMA = (0.299, 0.587, 0.114)


def is_off(strong_config) -> bool:
    return strong_config.color_jitter == 0.0 and strong_config.grayscale_p == 0.0


def check(strong_config) -> None:
    if not 0.0 <= strong_config.color_jitter < 1.0:
        raise ValueError(
            f"config.strong.color_jitter must be in [0, 1), got {strong_config.color_jitter}"
        )
    if not 0.0 <= strong_config.grayscale_p <= 1.0:
        raise ValueError(
            f"config.strong.grayscale_p must be in [0, 1], got {strong_config.grayscale_p}"
        )


def _luma(x: jax.Array) -> jax.Array:
    return jnp.tensordot(x, jnp.asarray(_LUMA, x.dtype), axes=([-1], [0]))[..., None]


def jitter(pixels: jax.Array, factors: jax.Array, gray: jax.Array) -> jax.Array:
    """[N,H,W,3] pixels in [0, 1]; factors [N, 3] (brightness, contrast, saturation); gray [N]
    bool. Brightness scales, contrast blends with the image's mean luma, saturation with the
    pixel's luma, each clipped to [0, 1] (torchvision's order and rules)."""
    f = factors[:, None, None, :]
    x = jnp.clip(pixels * f[..., 0:1], 0.0, 1.0)
    mean = jnp.mean(_luma(x), axis=(1, 2, 3), keepdims=True)
    x = jnp.clip(mean + f[..., 1:2] * (x - mean), 0.0, 1.0)
    x = jnp.clip(_luma(x) + f[..., 2:3] * (x - _luma(x)), 0.0, 1.0)
    return jnp.where(gray[:, None, None, None], jnp.broadcast_to(_luma(x), x.shape), x)


def strong_view(images: jax.Array, rng: jax.Array, strong_config) -> jax.Array:
    """The perturbed copy of normalised `images` [N,H,W,3]; `rng` a key."""
    if is_off(strong_config):
        return images
    mean = jnp.asarray(IMAGENET_MEAN, images.dtype)
    std = jnp.asarray(IMAGENET_STD, images.dtype)
    k_factor, k_gray = jax.random.split(rng)
    s = strong_config.color_jitter
    factors = jax.random.uniform(
        k_factor, (images.shape[0], 3), images.dtype, minval=1.0 - s, maxval=1.0 + s
    )
    gray = jax.random.uniform(k_gray, (images.shape[0],)) < strong_config.grayscale_p
    pixels = jitter(images * std + mean, factors, gray)
    return jax.lax.stop_gradient((pixels - mean) / std)
