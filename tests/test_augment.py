"""The student's colour perturbation (config.strong), against NumPy and hand cases."""

import jax
import ml_collections
import numpy as np
import pytest

from cps_jax import augment
from cps_jax.data.transforms import IMAGENET_MEAN, IMAGENET_STD


def strong(color_jitter=0.0, grayscale_p=0.0):
    return ml_collections.ConfigDict(dict(color_jitter=color_jitter, grayscale_p=grayscale_p))


def numpy_jitter(x, factors, gray):
    luma = lambda v: (v * np.array([0.299, 0.587, 0.114])).sum(-1, keepdims=True)
    out = []
    for img, (b, c, s), g in zip(x, factors, gray):
        img = np.clip(img * b, 0, 1)
        img = np.clip(luma(img).mean() + c * (img - luma(img).mean()), 0, 1)
        img = np.clip(luma(img) + s * (img - luma(img)), 0, 1)
        out.append(np.repeat(luma(img), 3, -1) if g else img)
    return np.stack(out)


def test_jitter_matches_numpy():
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(3, 4, 5, 3)).astype(np.float32)
    factors = np.array([[1.2, 0.8, 1.0], [0.7, 1.3, 0.5], [1.0, 1.0, 1.0]], np.float32)
    gray = np.array([False, False, True])
    np.testing.assert_allclose(augment.jitter(x, factors, gray), numpy_jitter(x, factors, gray), atol=1e-6)
    # Factors of 1 and no greyscale leave the pixels as they are.
    np.testing.assert_allclose(augment.jitter(x, np.ones((3, 3), np.float32), np.zeros(3, bool)), x, atol=1e-6)


def test_strong_view_is_off_by_default_and_keeps_normalisation():
    rng = np.random.default_rng(1)
    pixels = rng.uniform(size=(4, 6, 6, 3)).astype(np.float32)
    images = (pixels - np.array(IMAGENET_MEAN, np.float32)) / np.array(IMAGENET_STD, np.float32)
    key = jax.random.key(0)
    assert augment.strong_view(images, key, strong()) is images
    grey = np.asarray(augment.strong_view(images, key, strong(grayscale_p=1.0)))
    back = grey * np.array(IMAGENET_STD) + np.array(IMAGENET_MEAN)
    np.testing.assert_allclose(back[..., 0], back[..., 1], atol=1e-5)
    np.testing.assert_allclose(back[..., 1], back[..., 2], atol=1e-5)
    jittered = np.asarray(augment.strong_view(images, key, strong(color_jitter=0.5)))
    back = jittered * np.array(IMAGENET_STD) + np.array(IMAGENET_MEAN)
    assert back.min() >= -1e-5 and back.max() <= 1 + 1e-5 and not np.allclose(back, pixels)
    # Each image gets its own factors: the ratio of brightness differs between images.
    ratios = back.mean(axis=(1, 2, 3)) / pixels.mean(axis=(1, 2, 3))
    assert np.ptp(ratios) > 0.01


@pytest.mark.parametrize("field,value", [("color_jitter", 1.0), ("grayscale_p", 1.5)])
def test_bad_values_name_the_field(field, value):
    config = strong()
    config[field] = value
    with pytest.raises(ValueError, match=f"config.strong.{field}"):
        augment.check(config)
