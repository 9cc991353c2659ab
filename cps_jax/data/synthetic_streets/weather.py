"""Weather and time of day of the `weather` domain: which condition a scene has, and its effect.

Each draw comes from a random stream of its own, so the `weather` domain changes no other draw:
its "clear" scenes are the `photo` domain's, pixel for pixel.
"""

from typing import NamedTuple

import numpy as np

from cps_jax.data.palette import BUILDING, ROAD, SIDEWALK, SKY, TERRAIN, TRAFFIC_LIGHT
from cps_jax.data.synthetic_streets.filters import gauss_blur

# Weather and time of day of a `weather`-domain scene, and how often each is drawn.
CONDITIONS = ("clear", "overcast", "rain", "fog", "dusk", "night")
CONDITION_PROBS = (0.4, 0.12, 0.12, 0.12, 0.12, 0.12)
# conditions that grey the scene and its sky
_GREY = ("overcast", "rain", "fog")


class Condition(NamedTuple):
    name: str  # one of CONDITIONS
    strength: float  # in [0.6, 1]
    phase: float  # in [0, 1]: varies the sky's grey and how many windows are lit at night


def draw_condition(seed) -> Condition:
    """The condition of scene `seed` in the `weather` domain."""
    rng = np.random.default_rng([int(seed), 0xC0D1])
    name = CONDITIONS[rng.choice(len(CONDITIONS), p=CONDITION_PROBS)]
    return Condition(name, rng.uniform(0.6, 1.0), rng.uniform(0, 1))


def scene_condition(seed: int) -> str:
    """The weather and time of day (one of CONDITIONS) of scene `seed` in the `weather` domain."""
    return draw_condition(seed).name


def visibility(condition, clear_visibility):
    """Metres to 1/e contrast: fog shortens the scene's own visibility to 8..24 m."""
    if condition.name == "fog":
        return 8 + 40 * (1 - condition.strength)
    return clear_visibility


def haze_colour(condition, sky_horizon):
    """Colour that distance fades to: the horizon's, or a flat grey under a grey sky."""
    if condition.name in _GREY:
        return np.full(3, 0.55 + 0.25 * condition.phase, np.float32)
    return sky_horizon


def apply_condition(img, condition, mask, noise, sky_horizon, seed):
    """Weather and time of day on the hazy image [H, W, 3]: overcast and rain grey the scene (rain
    also wets the ground and streaks the air), dusk warms and darkens it, night darkens it and
    lights windows and traffic lights. Fog is the short visibility of the haze."""
    name, k = condition.name, condition.strength
    if name in _GREY:
        grey = img.mean(-1, keepdims=True)
        img = (grey + (img - grey) * (1 - 0.5 * k)) * (1 - 0.3 * k)
        img = np.where((mask == SKY)[..., None], grey * 0.3 + 0.55 + 0.2 * condition.phase, img)
    if name == "rain":
        img = _rain(img, k, mask, noise, sky_horizon, seed)
    if name == "dusk":
        img = img * np.array([1.15, 0.85, 0.6], np.float32) * (1 - 0.45 * k)
    if name == "night":
        img = _night(img, condition, mask, noise)
    return img


def _rain(img, k, mask, noise, sky_horizon, seed):
    """Wet, shiny road and sidewalks, and slanted streaks of falling drops."""
    wet = np.isin(mask, (ROAD, SIDEWALK))[..., None]
    shine = np.clip(0.5 + 0.5 * noise.coarse, 0, 1)[..., None] * 0.25 * k
    img = np.where(wet, img * (1 - 0.4 * k) + shine * sky_horizon.mean(), img)
    rng = np.random.default_rng([seed, 0xC0D2])  # the streaks' own stream
    height, width = mask.shape
    drops = (rng.random((height, width)) < 0.004 * k).astype(np.float32)
    length = max(2, height // 10)
    slant = rng.uniform(-0.4, 0.4)
    streaks = sum(np.roll(drops, (j, round(j * slant)), axis=(0, 1)) for j in range(length))
    return img + 0.12 * np.clip(streaks, 0, 1)[..., None]


def _night(img, condition, mask, noise):
    """A dark blue scene and black sky, lit windows, pools of street light and glowing lights."""
    k = condition.strength
    dark = np.array([0.55, 0.7, 1.0], np.float32) * (0.2 + 0.15 * (1 - k))
    glow = np.zeros_like(img)
    lit = (mask == BUILDING) & (noise.med > 0.35 + 0.4 * condition.phase)
    glow[lit] = np.array([1.0, 0.8, 0.45], np.float32) * 0.6
    ground = np.isin(mask, (ROAD, SIDEWALK, TERRAIN))
    pools = np.clip(noise.coarse, 0, 1)[ground][:, None]
    glow[ground] = pools * np.array([0.35, 0.27, 0.15], np.float32) * img[ground]
    lights = mask == TRAFFIC_LIGHT
    glow[lights] = img[lights]
    sky = (mask == SKY)[..., None]
    img = np.where(sky, np.array([0.02, 0.03, 0.07], np.float32), img * dark)
    width = mask.shape[1]
    return img + glow + 0.5 * gauss_blur(glow, 1.5 * width / 192)
