"""From the painted scene to the uint8 image: in the photo and weather domains haze, weather,
exposure, white balance, contrast, saturation, gamma, vignette, lens blur and sensor noise."""

import numpy as np

from cps_jax.data.synthetic_streets import weather
from cps_jax.data.synthetic_streets.filters import gauss_blur


def to_uint8(img):
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)


def develop(canvas, look, condition, rng, seed):
    """The image of `canvas`; `rng` draws the sensor noise, `seed` seeds the rain."""
    img = canvas.img
    if not canvas.photo:
        return to_uint8(img)
    visibility = weather.visibility(condition, look.visibility)
    img = _haze(img, canvas.depth, visibility, weather.haze_colour(condition, look.sky_horizon))
    img = weather.apply_condition(img, condition, canvas.mask, canvas.noise, look.sky_horizon, seed)
    img = _respond(img, look)
    img = _vignette(img, canvas, look.vignette)
    img = gauss_blur(img.astype(np.float32), look.blur)
    noise = look.noise * (3.0 if condition.name == "night" else 1.0)
    img = img + noise * (
        rng.standard_normal(img.shape[:2], dtype=np.float32)[..., None]
        + 0.5 * rng.standard_normal(img.shape, dtype=np.float32)
    )
    return to_uint8(img)


def _haze(img, depth, visibility, colour):
    """Aerial perspective: far surfaces fade towards `colour` (the sky, at infinite depth, is
    left as painted)."""
    haze = np.where(np.isfinite(depth), 1 - np.exp(-np.minimum(depth, 1e4) / visibility), 0.0)
    return img * (1 - haze[..., None]) + colour * haze[..., None]


def _respond(img, look):
    """Exposure and white balance, contrast about the mean, saturation, gamma."""
    img = img * (look.exposure * look.wb)
    mean = img.mean()
    img = (img - mean) * look.contrast + mean
    grey = img.mean(-1, keepdims=True)
    img = grey + (img - grey) * look.saturation
    return np.clip(img, 0, 1) ** look.gamma


def _vignette(img, canvas, amount):
    if amount <= 0:
        return img
    H, W = canvas.H, canvas.W
    ry = ((canvas.ys - H / 2) / (H / 2)) ** 2
    rx = ((canvas.xs - W / 2) / (W / 2)) ** 2
    return img * (1 - amount * 0.5 * (ry[:, None] + rx[None, :]))[..., None]
