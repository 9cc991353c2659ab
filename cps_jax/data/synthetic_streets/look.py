"""A scene's appearance: colours picked from the tables, textures, lighting and camera response.

Every value is drawn in every domain, in one fixed order, so the layout drawn after it (and so
the mask) does not depend on the domain; the `render` domain simply ignores what it does not use.
"""

import dataclasses

import numpy as np

from cps_jax.data.synthetic_streets import colours
from cps_jax.data.synthetic_streets.colours import rgb


def jitter(rng, col, amount=0.08, bright=(0.85, 1.15)):
    """`col` with each channel scaled by 1 +- `amount` and the whole by a factor in `bright`."""
    c = col * rng.uniform(1 - amount, 1 + amount, 3) * rng.uniform(*bright)
    return np.clip(c, 0, 1).astype(np.float32)


def pick(rng, table, amount=0.08, bright=(0.85, 1.15)):
    """A jittered entry of a colour table."""
    return jitter(rng, table[rng.integers(len(table))], amount, bright)


def random_colour(rng, sat=(0.2, 1.0), val=(0.15, 1.0)):
    """Any hue, saturation and value in the given ranges (HSV -> RGB)."""
    h, s, v = rng.random(), rng.uniform(*sat), rng.uniform(*val)
    k = (np.array([5.0, 3.0, 1.0]) + h * 6) % 6
    return (v - v * s * np.clip(np.minimum(k, 4 - k), 0, 1)).astype(np.float32)


@dataclasses.dataclass(frozen=True)
class Look:
    # colours of the sky and ground classes, poles and road paint
    sky_zenith: np.ndarray
    sky_horizon: np.ndarray
    clouds: float  # cloud cover offset
    road: np.ndarray
    sidewalk: np.ndarray
    kerb: np.ndarray
    terrain: np.ndarray
    vegetation: np.ndarray
    pole: np.ndarray
    style_p: np.ndarray  # how often each facade style (colours.STYLES) is drawn
    marking: np.ndarray
    centre: np.ndarray  # the centre line of a two-way road
    marking_fade: float
    # textures
    tile: float  # sidewalk tile size in metres
    tile_amp: float
    grain: float  # asphalt grain
    patches: float  # asphalt repair patches
    # lighting
    sunny: bool
    sun_side: int  # the side (-1 left, 1 right) the sun shines from
    sun_k: float  # shadow length per metre of height
    shadow: float  # brightness factor in shadow
    front_shade: float  # brightness of faces towards the camera
    # camera response
    exposure: float
    contrast: float
    gamma: float
    wb: np.ndarray  # white balance [3]
    saturation: float
    vignette: float
    blur: float  # sigma in pixels
    noise: float  # sensor noise
    visibility: float  # haze: metres to 1/e contrast


def sample_look(rng, width):
    """The appearance of one scene (image `width` scales the blur)."""
    zen, hor = colours.SKIES[rng.integers(len(colours.SKIES))]
    # the keyword arguments are evaluated, so drawn, in the order written
    return Look(
        sky_zenith=jitter(rng, zen, 0.06),
        sky_horizon=jitter(rng, hor, 0.06),
        clouds=rng.uniform(-0.3, 0.6),
        road=pick(rng, colours.ROADS, 0.05),
        sidewalk=(sidewalk := pick(rng, colours.SIDEWALKS, 0.06)),
        kerb=np.clip(sidewalk * rng.uniform(0.7, 1.3), 0, 1),
        terrain=pick(rng, colours.TERRAINS, 0.1),
        vegetation=pick(rng, colours.VEGETATION, 0.1),
        pole=pick(rng, colours.POLES, 0.05),
        style_p=rng.dirichlet(np.full(len(colours.STYLES), 0.6)),
        marking=(marking := rgb(240, 240, 235) if rng.random() < 0.8 else rgb(235, 190, 40)),
        centre=rgb(240, 190, 30) if rng.random() < 0.4 else marking,
        marking_fade=rng.uniform(0.35, 1.0),
        tile=rng.uniform(0.3, 0.9),
        tile_amp=rng.uniform(0.0, 0.15),
        grain=rng.uniform(0.03, 0.12),
        patches=rng.uniform(0.0, 0.12),
        sunny=(sunny := rng.random() < 0.6),
        sun_side=int(rng.choice([-1, 1])),
        sun_k=rng.uniform(0.3, 2.0),
        shadow=rng.uniform(0.4, 0.7) if sunny else rng.uniform(0.8, 0.95),
        front_shade=rng.uniform(0.7, 0.95),
        exposure=rng.uniform(0.6, 1.35),
        contrast=rng.uniform(0.75, 1.3),
        gamma=rng.uniform(0.8, 1.25),
        wb=_white_balance(rng),
        saturation=rng.uniform(0.5, 1.4),
        vignette=rng.uniform(0.0, 0.4),
        blur=rng.uniform(0.25, 0.9) * width / 192,
        noise=rng.uniform(0.004, 0.028),
        visibility=rng.uniform(100, 1500),
    )


def _white_balance(rng):
    """Channel gains [3] from warm to cold, with a small green shift."""
    t = rng.uniform(-1, 1)
    return np.array([1 + 0.16 * t, 1 + rng.uniform(-0.04, 0.04), 1 - 0.16 * t], np.float32)
