"""Pure pixel-field functions: a lattice hash and value noise for procedural textures, the noise
fields of one photo-domain scene, and a Gaussian blur."""

from typing import NamedTuple

import numpy as np


def lattice_hash(i, j, salt):
    """Integer lattice -> uniform floats in [0, 1) (vectorised, deterministic)."""
    # float -> int64 -> uint32 wraps negative cells portably (a direct negative float -> uint32
    # cast is undefined)
    i = np.asarray(i).astype(np.int64).astype(np.uint32)
    j = np.asarray(j).astype(np.int64).astype(np.uint32)
    h = (i * np.uint32(0x9E3779B1)) ^ (j * np.uint32(0x85EBCA77)) ^ np.uint32(salt & 0xFFFFFFFF)
    h = h ^ (h >> np.uint32(15))
    h = h * np.uint32(0x2C1B3C6D)
    h = h ^ (h >> np.uint32(12))
    return (h >> np.uint32(8)).astype(np.float32) * np.float32(1.0 / (1 << 24))


def value_noise(rng, height, width, cell):
    """Smooth noise in [-1, 1] with features of about `cell` pixels (bilinear, smoothstep)."""
    cell = max(float(cell), 1.0)
    g = rng.random((int(height / cell) + 3, int(width / cell) + 3), dtype=np.float32) * 2 - 1
    y = (np.arange(height, dtype=np.float32) + 0.5) / cell
    x = (np.arange(width, dtype=np.float32) + 0.5) / cell
    y0, x0 = y.astype(np.int32), x.astype(np.int32)
    ty, tx = y - y0, x - x0
    ty, tx = (ty * ty * (3 - 2 * ty))[:, None], tx * tx * (3 - 2 * tx)
    top = g[y0][:, x0] * (1 - tx) + g[y0][:, x0 + 1] * tx
    bot = g[y0 + 1][:, x0] * (1 - tx) + g[y0 + 1][:, x0 + 1] * tx
    return top * (1 - ty) + bot * ty


class NoiseFields(NamedTuple):
    """Screen-space noise [H, W] that photo-domain textures modulate colours with."""

    fine: np.ndarray  # per-pixel grain (standard normal)
    med: np.ndarray  # features of 2.5 px at 192 px width
    coarse: np.ndarray  # features of 10 px at 192 px width
    leaf: np.ndarray  # foliage: grain and medium noise mixed


def noise_fields(rng, height, width):
    """The noise fields of one scene, drawn from `rng` (scale follows the image width)."""
    fine = rng.standard_normal((height, width), dtype=np.float32)
    med = value_noise(rng, height, width, 2.5 * width / 192)
    coarse = value_noise(rng, height, width, 10 * width / 192)
    return NoiseFields(fine, med, coarse, 0.6 * fine + 0.7 * med)


def gauss_blur(img, sigma):
    """Separable Gaussian blur of [H, W, C] with edge padding; none below sigma 0.2."""
    if sigma < 0.2:
        return img
    r = max(1, int(np.ceil(2.5 * sigma)))
    k = np.exp(-0.5 * (np.arange(-r, r + 1, dtype=np.float32) / sigma) ** 2)
    k /= k.sum()
    h, w = img.shape[:2]
    p = np.pad(img, ((r, r), (0, 0), (0, 0)), mode="edge")
    out = sum(k[i] * p[i : i + h] for i in range(2 * r + 1))
    p = np.pad(out, ((0, 0), (r, r), (0, 0)), mode="edge")
    return sum(k[i] * p[:, i : i + w] for i in range(2 * r + 1))
