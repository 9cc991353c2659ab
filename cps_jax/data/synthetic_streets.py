r"""`synthetic_streets`: procedurally generated street scenes for semi-supervised segmentation.

Every scene is a deterministic function of an integer seed. A pinhole camera stands on a straight
street (horizon, vanishing point, focal length and camera height vary per scene); the road has
lanes, markings and sometimes a zebra crossing, sidewalks with kerbs on both sides, cross streets,
rows of buildings with windows and shop fronts (plus a back row and a distant skyline), walls,
fences and hedges, parks with trees, street lamps, traffic signs and lights, parked and moving cars
and pedestrians. Geometry is rasterised with a z-buffer (pure, vectorised numpy), so near things
occlude far ones.

The appearance of each class varies a lot from scene to scene (colour palettes per class,
procedural textures, sun and shadows, haze, exposure, white balance, blur and sensor noise), so a
few labelled images do not cover the appearance space and unlabelled ones carry information.

Three domains share the layout: `render` (flat colours, hard edges, no noise: a game engine),
`photo` (textured, lit, hazy, blurred and noisy; the default) and `weather` (`photo` under varied
weather and time of day: 40% clear, the rest overcast, rain, fog, dusk or night). The same seed
gives the same mask in all three.

  image, mask = render_scene(seed=3, height=96, width=192)          # uint8 [H,W,3], [H,W]
  ds = prepare("data")                                              # TFDS, array_record
  ds.as_data_source(split="train")[0]  # {"image", "mask" [H,W,1], "id", "classes" multi-hot}

`python -m cps_jax.data.synthetic_streets --data_dir DIR [--height 96 ...]` prepares it ahead.
"""

import argparse
import io
import multiprocessing
import os
import sys
import time

import numpy as np
import tensorflow_datasets as tfds
from etils import epath
from PIL import Image

from cps_jax.data.palette import (
    BUILDING,
    CAR,
    CLASS_NAMES,
    FENCE,
    IGNORE_LABEL,
    NUM_CLASSES,
    PALETTE,
    PERSON,
    POLE,
    ROAD,
    SIDEWALK,
    SKY,
    TERRAIN,
    TRAFFIC_LIGHT,
    TRAFFIC_SIGN,
    VEGETATION,
    WALL,
    colorize,
)

__all__ = [
    "CLASS_NAMES",
    "PALETTE",
    "NUM_CLASSES",
    "IGNORE_LABEL",
    "DOMAINS",
    "CONDITIONS",
    "CONDITION_PROBS",
    "scene_condition",
    "render_scene",
    "example_seed",
    "SyntheticStreets",
    "SyntheticStreetsConfig",
    "builder",
    "prepare",
    "colorize",
]

DOMAINS = ("photo", "render", "weather")
# Weather and time of day of a `weather`-domain scene, and how often each is drawn.
CONDITIONS = ("clear", "overcast", "rain", "fog", "dusk", "night")
CONDITION_PROBS = (0.4, 0.12, 0.12, 0.12, 0.12, 0.12)
_SPLIT_CODES = {"train": 0, "validation": 1}


def _cols(*rgb):
    return np.array(rgb, np.float32) / 255.0


# Appearance palettes (sRGB / 255). Each scene picks entries and jitters them.
_SKIES = [  # (zenith, horizon)
    _cols((60, 120, 200), (170, 200, 235)),
    _cols((90, 150, 220), (205, 222, 240)),
    _cols((165, 170, 178), (205, 205, 210)),
    _cols((118, 122, 132), (168, 168, 172)),
    _cols((70, 80, 140), (240, 170, 110)),
    _cols((40, 50, 95), (190, 130, 120)),
    _cols((140, 170, 200), (215, 215, 205)),
    _cols((100, 160, 215), (232, 236, 240)),
    _cols((190, 190, 185), (225, 222, 210)),
    _cols((80, 100, 130), (150, 160, 170)),
]
_ROADS = _cols(
    (70, 70, 72),
    (90, 90, 92),
    (110, 108, 105),
    (128, 126, 122),
    (58, 60, 64),
    (100, 95, 90),
    (145, 143, 140),
    (80, 78, 86),
    (115, 100, 95),
    (45, 46, 50),
)
_SIDEWALKS = _cols(
    (160, 160, 155),
    (185, 180, 170),
    (140, 140, 140),
    (170, 110, 95),
    (190, 175, 150),
    (120, 118, 115),
    (205, 203, 195),
    (150, 130, 120),
    (175, 160, 175),
    (130, 140, 150),
)
_TERRAINS = _cols(
    (90, 125, 50),
    (110, 140, 60),
    (70, 100, 45),
    (160, 150, 90),
    (130, 105, 70),
    (120, 130, 70),
    (150, 140, 110),
    (95, 110, 60),
)
_VEGETATION = _cols(
    (50, 90, 35),
    (70, 110, 40),
    (40, 70, 30),
    (90, 120, 50),
    (60, 100, 60),
    (120, 130, 40),
    (150, 110, 40),
    (170, 90, 35),
    (80, 95, 45),
    (35, 60, 40),
    (100, 140, 70),
)
_BUILDINGS = {
    "brick": _cols(
        (150, 70, 50),
        (170, 90, 60),
        (120, 60, 45),
        (180, 110, 80),
        (140, 100, 80),
        (110, 50, 40),
        (160, 120, 100),
    ),
    "concrete": _cols(
        (150, 150, 145),
        (120, 120, 118),
        (175, 170, 160),
        (100, 100, 105),
        (135, 130, 120),
        (190, 190, 185),
    ),
    "plaster": _cols(
        (220, 200, 160),
        (200, 180, 150),
        (230, 220, 200),
        (180, 200, 210),
        (210, 170, 150),
        (190, 210, 180),
        (240, 235, 225),
        (200, 160, 170),
        (170, 180, 200),
        (230, 190, 120),
    ),
    "glass": _cols(
        (60, 90, 110), (80, 110, 120), (40, 60, 80), (100, 130, 140), (70, 80, 70), (110, 120, 135)
    ),
    "dark": _cols((55, 55, 60), (75, 70, 65), (90, 85, 80), (60, 50, 45)),
}
_STYLES = tuple(_BUILDINGS)
_WINDOWS = _cols(
    (30, 35, 45), (50, 60, 75), (80, 95, 110), (20, 22, 25), (110, 130, 150), (60, 55, 50)
)
_WALLS = _cols(
    (160, 160, 155),
    (130, 130, 125),
    (180, 170, 150),
    (150, 80, 60),
    (110, 110, 115),
    (200, 195, 185),
    (120, 100, 80),
    (170, 150, 130),
)
_FENCES = _cols(
    (50, 50, 50),
    (40, 70, 50),
    (120, 120, 120),
    (110, 80, 50),
    (150, 110, 70),
    (220, 220, 215),
    (80, 60, 40),
    (60, 80, 90),
)
_POLES = _cols(
    (110, 110, 110),
    (60, 60, 60),
    (40, 60, 45),
    (150, 150, 150),
    (80, 80, 90),
    (30, 30, 30),
    (120, 110, 90),
)
_CARS = _cols(
    (230, 230, 230),
    (20, 20, 22),
    (160, 160, 165),
    (100, 100, 105),
    (170, 20, 20),
    (20, 40, 120),
    (30, 60, 140),
    (20, 80, 40),
    (230, 200, 30),
    (220, 100, 20),
    (110, 70, 40),
    (200, 190, 160),
    (70, 20, 25),
    (140, 170, 190),
    (245, 245, 240),
)
_SKIN = _cols(
    (255, 219, 172), (241, 194, 125), (224, 172, 105), (198, 134, 66), (141, 85, 36), (90, 56, 37)
)
_HAIR = _cols(
    (20, 15, 10), (60, 40, 25), (110, 75, 40), (200, 170, 100), (150, 150, 150), (130, 50, 20)
)
_TROUSERS = _cols(
    (40, 60, 110),
    (25, 25, 30),
    (150, 130, 95),
    (90, 90, 95),
    (60, 80, 140),
    (110, 40, 40),
    (200, 200, 195),
)
_BARK = _cols((70, 55, 40), (90, 80, 70), (60, 50, 45), (110, 100, 90))


def _hash(i, j, salt):
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


def _value_noise(rng, height, width, cell):
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


def _gauss_blur(img, sigma):
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


def _draw_condition(seed):
    """(condition, strength in [0.6, 1], phase in [0, 1]) of scene `seed` in the `weather` domain.

    Drawn from a stream of its own, so the `weather` domain changes no other draw: its "clear"
    scenes are the `photo` domain's, pixel for pixel."""
    rng = np.random.default_rng([int(seed), 0xC0D1])
    condition = CONDITIONS[rng.choice(len(CONDITIONS), p=CONDITION_PROBS)]
    return condition, rng.uniform(0.6, 1.0), rng.uniform(0, 1)


def scene_condition(seed: int) -> str:
    """The weather and time of day (one of CONDITIONS) of scene `seed` in the `weather` domain."""
    return _draw_condition(seed)[0]


class _Scene:
    """Samples one scene's layout and appearance (domain independent) and rasterises it."""

    def __init__(self, seed, height, width, domain):
        self.H, self.W = int(height), int(width)
        self.photo, self.weather = domain != "render", domain == "weather"
        self.seed = int(seed)
        # `rng` drives layout and appearance in the same order in every domain; `trng` only the
        # photo-domain noise fields, so the mask never depends on the domain.
        self.rng = np.random.default_rng([int(seed), 0x5EED])
        self.trng = np.random.default_rng([int(seed), 0x7E47])
        self.salt = int(self.rng.integers(1, 2**31))
        self.ys = np.arange(self.H, dtype=np.float32) + 0.5
        self.xs = np.arange(self.W, dtype=np.float32) + 0.5
        self._sample_camera()
        self._sample_look()
        self._sample_road()
        self._sample_sides()
        self._sample_objects()

    # ----------------------------------------------------------------------------- sampling
    def _jit(self, col, amount=0.08, bright=(0.85, 1.15)):
        rng = self.rng
        c = col * rng.uniform(1 - amount, 1 + amount, 3) * rng.uniform(*bright)
        return np.clip(c, 0, 1).astype(np.float32)

    def _pick(self, table, amount=0.08, bright=(0.85, 1.15)):
        return self._jit(table[self.rng.integers(len(table))], amount, bright)

    def _random_colour(self, sat=(0.2, 1.0), val=(0.15, 1.0)):
        rng = self.rng
        h, s, v = rng.random(), rng.uniform(*sat), rng.uniform(*val)
        k = (np.array([5.0, 3.0, 1.0]) + h * 6) % 6
        return (v - v * s * np.clip(np.minimum(k, 4 - k), 0, 1)).astype(np.float32)

    def _sample_camera(self):
        rng, W, H = self.rng, self.W, self.H
        self.f = W * rng.uniform(0.72, 1.05)
        self.hc = rng.uniform(1.2, 1.8)
        self.cy = H * rng.uniform(0.30, 0.50)
        self.cx = W * (0.5 + rng.uniform(-0.16, 0.16))

    def _sample_look(self):
        rng = self.rng
        zen, hor = _SKIES[rng.integers(len(_SKIES))]
        self.sky_zenith, self.sky_horizon = self._jit(zen, 0.06), self._jit(hor, 0.06)
        self.clouds = rng.uniform(-0.3, 0.6)
        self.road_col = self._pick(_ROADS, 0.05)
        self.sidewalk_col = self._pick(_SIDEWALKS, 0.06)
        self.kerb_col = np.clip(self.sidewalk_col * rng.uniform(0.7, 1.3), 0, 1)
        self.terrain_col = self._pick(_TERRAINS, 0.1)
        self.veg_col = self._pick(_VEGETATION, 0.1)
        self.pole_col = self._pick(_POLES, 0.05)
        self.style_p = rng.dirichlet(np.full(len(_STYLES), 0.6))
        self.marking_col = _cols(240, 240, 235) if rng.random() < 0.8 else _cols(235, 190, 40)
        self.centre_col = _cols(240, 190, 30) if rng.random() < 0.4 else self.marking_col
        self.marking_fade = rng.uniform(0.35, 1.0)
        self.tile = rng.uniform(0.3, 0.9)
        self.tile_amp = rng.uniform(0.0, 0.15)
        self.grain = rng.uniform(0.03, 0.12)
        self.patches = rng.uniform(0.0, 0.12)
        # lighting and camera response (used by the photo domain only, but always drawn)
        self.sunny = rng.random() < 0.6
        self.sun_side = int(rng.choice([-1, 1]))
        self.sun_k = rng.uniform(0.3, 2.0)
        self.shadow = rng.uniform(0.4, 0.7) if self.sunny else rng.uniform(0.8, 0.95)
        self.front_shade = rng.uniform(0.7, 0.95)
        self.exposure = rng.uniform(0.6, 1.35)
        self.contrast = rng.uniform(0.75, 1.3)
        self.gamma = rng.uniform(0.8, 1.25)
        t = rng.uniform(-1, 1)
        self.wb = np.array([1 + 0.16 * t, 1 + rng.uniform(-0.04, 0.04), 1 - 0.16 * t], np.float32)
        self.saturation = rng.uniform(0.5, 1.4)
        self.vignette = rng.uniform(0.0, 0.4)
        self.blur = rng.uniform(0.25, 0.9) * self.W / 192
        self.noise = rng.uniform(0.004, 0.028)
        self.visibility = rng.uniform(100, 1500)
        self._sample_condition()

    def _sample_condition(self):
        condition, self.cond_strength, self.cond_phase = _draw_condition(self.seed)
        self.condition = condition if self.weather else "clear"

    def _sample_road(self):
        rng = self.rng
        n = int(rng.choice([2, 2, 3, 4, 4, 5, 6]))
        lw = rng.uniform(2.7, 3.6)
        self.two_way = rng.random() < 0.75
        first = n // 2 if self.two_way else 0
        ego = int(rng.integers(first, n))
        self.n_lanes, self.lane_w = n, lw
        self.XL = -(ego + 0.5) * lw + rng.uniform(-0.4, 0.4)
        self.XR = self.XL + n * lw
        self.sw = {-1: rng.uniform(1.5, 5.0), 1: rng.uniform(1.5, 5.0)}
        # a grass verge between kerb and footway on some streets
        self.verge = {
            s: rng.uniform(0.6, 0.5 * self.sw[s]) if rng.random() < 0.3 else 0.0 for s in (-1, 1)
        }
        self.dash_period = rng.uniform(6, 12)
        self.dash_duty = rng.uniform(0.3, 0.6)
        self.centre_double = rng.random() < 0.5
        self.edge_lines = rng.random() < 0.5
        self.zebra = rng.uniform(6, 35) if rng.random() < 0.35 else None

    def edge(self, s):
        return self.XL if s < 0 else self.XR

    def outer(self, s):
        return self.edge(s) + s * self.sw[s]

    def _building(self, X, s, hmin=4.0, hmax=30.0):
        rng = self.rng
        style = _STYLES[rng.choice(len(_STYLES), p=self.style_p)]
        col = self._pick(_BUILDINGS[style], 0.08, (0.8, 1.2))
        if style == "glass":
            hmin, hmax = max(hmin, 12.0), hmax * 1.5
        fh = rng.uniform(2.8, 3.8)
        b = dict(
            X=X,
            s=s,
            style=style,
            col=col,
            h=rng.uniform(hmin, hmax),
            depth=rng.uniform(8, 25),
            fh=fh,
            gf=fh * rng.uniform(1.0, 1.4),
            ws=rng.uniform(1.4, 3.5),
            wo=rng.uniform(0, 3),
            wfw=rng.uniform(0.3, 0.75),
            wfh=rng.uniform(0.35, 0.65),
            wb0=rng.uniform(0.12, 0.3),
            win=self._pick(_WINDOWS, 0.1),
            lit=rng.uniform(0, 0.3) ** 2,
            frame=(self._pick(_cols((235, 235, 230), (40, 40, 40), (120, 110, 100)), 0.05)),
            shop=rng.random() < 0.5,
            shop_col=self._random_colour(),
            shop_w=rng.uniform(3, 8),
            mortar=np.clip(col * rng.uniform(0.6, 1.5), 0, 1),
            brick=rng.uniform(0.18, 0.35),
            panel=rng.uniform(1.2, 3.5),
            stain=rng.uniform(0.0, 0.25),
            cornice=rng.random() < 0.5,
            salt=int(rng.integers(1, 2**31)),
        )
        return b

    def _barrier(self, kind, X, s):
        rng = self.rng
        if kind == "wall":
            return dict(
                kind=kind,
                cls=WALL,
                X=X,
                h=rng.uniform(0.8, 3.2),
                col=self._pick(_WALLS, 0.08),
                pattern=int(rng.integers(4)),
                graffiti=rng.random() < 0.3,
                gcol=self._random_colour((0.5, 1.0), (0.4, 1.0)),
                period=rng.uniform(0.3, 3),
                salt=int(rng.integers(1, 2**31)),
            )
        if kind == "fence":
            return dict(
                kind=kind,
                cls=FENCE,
                X=X,
                h=rng.uniform(0.9, 2.2),
                col=self._pick(_FENCES, 0.1),
                pattern=int(rng.integers(3)),
                period=rng.uniform(0.1, 0.5),
                post=rng.uniform(1.5, 3.5),
                salt=int(rng.integers(1, 2**31)),
            )
        return dict(
            kind=kind,
            cls=VEGETATION,
            X=X,
            h=rng.uniform(0.7, 1.8),
            col=self._jit(self.veg_col, 0.1),
            wob=rng.uniform(0.05, 0.25),
            freq=rng.uniform(0.5, 2.0),
            salt=int(rng.integers(1, 2**31)),
        )

    def _sample_sides(self):
        rng = self.rng
        self.segs, self.back, self.zend = {}, {}, {}
        types = ("building", "wall", "fence", "park", "lot", "street")
        for s in (-1, 1):
            zend = rng.uniform(45, 140)
            p = np.array([0.55, 0.08, 0.08, 0.12, 0.05, 0.12])
            p = p * rng.uniform(0.3, 1.7, len(p))
            p /= p.sum()
            segs, z = [], 0.5
            while z < zend:
                typ = types[rng.choice(len(types), p=p)]
                if typ == "street" and (z < 7 or segs[-1]["type"] == "street"):
                    typ = "building"
                length = rng.uniform(7, 14) if typ == "street" else rng.uniform(6, 35)
                seg = dict(
                    type=typ,
                    z0=z,
                    z1=z + length,
                    building=None,
                    barrier=None,
                    ground=SIDEWALK if rng.random() < 0.5 else TERRAIN,
                )
                out = self.outer(s)
                if typ == "street":
                    seg["ground"] = ROAD
                elif typ == "building":
                    setback = 0.0 if rng.random() < 0.55 else rng.uniform(0.5, 6.0)
                    seg["building"] = self._building(out + s * setback, s)
                    if setback < 1.5:
                        seg["ground"] = SIDEWALK
                    elif rng.random() < 0.55:
                        seg["barrier"] = self._barrier(
                            ("wall", "fence", "hedge")[rng.integers(3)], out, s
                        )
                elif typ in ("wall", "fence"):
                    seg["barrier"] = self._barrier(typ, out, s)
                    if rng.random() < 0.5:
                        seg["building"] = self._building(out + s * rng.uniform(3, 12), s)
                elif typ == "park":
                    seg["ground"] = TERRAIN
                    if rng.random() < 0.3:
                        seg["barrier"] = self._barrier("hedge", out, s)
                segs.append(seg)
                z += length
            self.segs[s], self.zend[s] = segs, z
            # back row of taller buildings, seen above and between the front row
            streets = [(g["z0"] - 1.0, g["z1"] + 1.0) for g in segs if g["type"] == "street"]
            back, z = [], 0.5
            Xb = self.outer(s) + s * rng.uniform(16, 40)
            while z < zend + 20:
                length = rng.uniform(12, 45)
                b = self._building(Xb + s * rng.uniform(0, 4), s, 8.0, 40.0)
                b["z0"], b["z1"] = z, z + length
                for a0, a1 in streets:
                    if b["z1"] > a0 and b["z0"] < a1:
                        b = None
                        break
                if b is not None:
                    back.append(b)
                z += length
            self.back[s] = back
        # distant skyline across the end of the street
        zs = max(self.zend.values()) + rng.uniform(10, 60)
        self.sky_z = zs
        hmax = self.hc + (self.cy - 0.1 * self.H) * zs / self.f
        lo, hi = self.outer(-1) - rng.uniform(0, 6), self.outer(1) + rng.uniform(0, 6)
        half = (self.W * 0.7) * zs / self.f
        skyline, x = [], -half
        while x < half:
            w = rng.uniform(6, 30)
            kind = "tree" if rng.random() < 0.3 else "building"
            h = rng.uniform(0.2, 1.0) * min(max(hmax, 3.0), 60.0)
            col = (
                self._jit(self.veg_col, 0.1)
                if kind == "tree"
                else self._pick(_BUILDINGS[_STYLES[rng.integers(len(_STYLES))]], 0.08)
            )
            if x + w < lo or x > hi:
                skyline.append(dict(kind=kind, x0=x, x1=x + w, h=h, col=col))
            x += w * rng.uniform(0.7, 1.1)
        self.skyline = skyline

    def _sample_objects(self):
        rng = self.rng
        objs = []  # (z, draw-method, params)
        # street lamps
        for s in (-1, 1):
            if rng.random() < 0.75:
                spacing = rng.uniform(14, 35)
                X = self.edge(s) + s * rng.uniform(0.3, 0.7)
                h, w, arm = rng.uniform(5, 9), rng.uniform(0.12, 0.25), rng.uniform(0.5, 2.5)
                for z in np.arange(rng.uniform(2, spacing), self.zend[s], spacing):
                    objs.append((z, self._draw_lamp, dict(X=X, z=z, h=h, w=w, arm=-s * arm)))
        # trees: street rows, parks, behind walls and fences
        for s in (-1, 1):
            if rng.random() < 0.35 and self.sw[s] > 2.0:
                spacing = rng.uniform(6, 15)
                X = self.edge(s) + s * (
                    rng.uniform(0.7, min(1.5, self.sw[s] - 0.5))
                    if not self.verge[s]
                    else self.verge[s] / 2 + 0.1
                )
                tree = self._tree_params()
                for z in np.arange(rng.uniform(2, spacing), self.zend[s], spacing):
                    objs.append((z, self._draw_tree, dict(self._tree_params(tree), X=X, z=z)))
            for seg in self.segs[s]:
                length = seg["z1"] - seg["z0"]
                if seg["type"] == "park":
                    n = int(length / rng.uniform(3, 9)) + 1
                elif seg["type"] in ("wall", "fence", "lot") or (seg["barrier"] is not None):
                    n = int(rng.random() < 0.5) * int(length / rng.uniform(5, 14))
                else:
                    n = 0
                for _ in range(n):
                    z = rng.uniform(seg["z0"], seg["z1"])
                    lim = (
                        15.0
                        if seg["building"] is None
                        else abs(seg["building"]["X"] - self.outer(s)) - 1
                    )
                    if lim < 1.2:
                        continue
                    X = self.outer(s) + s * rng.uniform(1.0, lim)
                    kind = "bush" if rng.random() < 0.3 else "tree"
                    objs.append(
                        (
                            z,
                            self._draw_tree,
                            dict(self._tree_params(), X=X, z=z, bush=kind == "bush"),
                        )
                    )
        # traffic signs
        for _ in range(rng.poisson(1.5)):
            s = int(rng.choice([-1, 1]))
            z = rng.uniform(4, 60)
            objs.append(
                (
                    z,
                    self._draw_sign,
                    dict(
                        X=self.edge(s) + s * rng.uniform(0.3, 0.9),
                        z=z,
                        h=rng.uniform(1.9, 3.0),
                        size=rng.uniform(0.5, 0.9),
                        shape=int(rng.integers(6)),
                        back=rng.random() < 0.1,
                    ),
                )
            )
        # traffic lights at cross streets (and sometimes elsewhere)
        for s in (-1, 1):
            for seg in self.segs[s]:
                if seg["type"] == "street" and rng.random() < 0.8:
                    z = max(3.0, seg["z0"] - rng.uniform(0.3, 3))
                    objs.append(
                        (
                            z,
                            self._draw_light,
                            dict(
                                X=self.edge(s) + s * rng.uniform(0.3, 0.8),
                                z=z,
                                h=rng.uniform(2.6, 4.2),
                                state=int(rng.integers(3)),
                                over=rng.uniform(2, 7) if rng.random() < 0.4 else 0.0,
                                s=s,
                                housing=self._pick(
                                    _cols((30, 30, 30), (60, 60, 55), (190, 160, 30), (40, 70, 50)),
                                    0.05,
                                ),
                            ),
                        )
                    )
        for _ in range(int(rng.random() < 0.35)):
            s = int(rng.choice([-1, 1]))
            z = rng.uniform(8, 50)
            objs.append(
                (
                    z,
                    self._draw_light,
                    dict(
                        X=self.edge(s) + s * rng.uniform(0.3, 0.8),
                        z=z,
                        h=rng.uniform(2.6, 4.2),
                        state=int(rng.integers(3)),
                        over=rng.uniform(2, 7) if rng.random() < 0.6 else 0.0,
                        s=s,
                        housing=self._pick(_cols((30, 30, 30), (60, 60, 55), (190, 160, 30)), 0.05),
                    ),
                )
            )
        # cars: moving traffic in lanes, parked cars along the kerbs
        density = rng.uniform(0.15, 0.8)
        parked = {s: rng.random() < 0.5 for s in (-1, 1)}
        for k in range(self.n_lanes):
            onc = self.two_way and k < self.n_lanes // 2
            Xk = self.XL + (k + 0.5) * self.lane_w
            z = rng.uniform(3, 12)
            while z < 110:
                car = self._car_params()
                if rng.random() < density:
                    edge_lane = k == 0 and parked[-1] or k == self.n_lanes - 1 and parked[1]
                    if edge_lane:
                        s = -1 if k == 0 else 1
                        X = self.edge(s) - s * (car["w"] / 2 + rng.uniform(0.1, 0.4))
                        car["front"] = False if not self.two_way else onc and rng.random() < 0.5
                    else:
                        X = Xk + rng.uniform(-0.4, 0.4)
                        car["front"] = onc
                    if abs(X) > 0.3 + car["w"] / 2 or z > 6:
                        objs.append((z, self._draw_car, dict(car, X=X, z=z)))
                z += car["L"] + rng.uniform(1, 20) / max(density, 0.2)
        # people on the sidewalks and on the zebra crossing
        for _ in range(rng.poisson(rng.uniform(0.5, 10))):
            s = int(rng.choice([-1, 1]))
            X = self.edge(s) + s * rng.uniform(0.3, max(0.4, self.sw[s] - 0.3))
            z = rng.uniform(3, 50)
            objs.append((z, self._draw_person, dict(self._person_params(), X=X, z=z)))
        if self.zebra is not None:
            for _ in range(rng.poisson(1.5)):
                z = self.zebra + rng.uniform(0.5, 3)
                X = rng.uniform(self.XL, self.XR)
                objs.append((z, self._draw_person, dict(self._person_params(), X=X, z=z)))
        objs.sort(key=lambda o: -o[0])
        self.objects = objs

    def _tree_params(self, like=None):
        rng = self.rng
        t = dict(
            conifer=rng.random() < 0.15,
            trunk_h=rng.uniform(1.2, 3.5),
            trunk_w=rng.uniform(0.15, 0.45),
            R=rng.uniform(1.2, 3.5),
            col=self._jit(self.veg_col, 0.15, (0.75, 1.25)),
            bark=self._pick(_BARK, 0.1),
            blobs=rng.uniform(-1, 1, (int(rng.integers(3, 8)), 4)),
            bush=False,
        )
        if like is not None:  # a row of similar trees
            for k in ("conifer", "col", "bark"):
                t[k] = like[k]
            t["R"] = like["R"] * rng.uniform(0.85, 1.15)
            t["trunk_h"] = like["trunk_h"] * rng.uniform(0.9, 1.1)
        return t

    def _car_params(self):
        rng = self.rng
        kind = int(rng.choice(4, p=[0.45, 0.25, 0.2, 0.1]))  # sedan, hatchback, suv, van
        w = rng.uniform(1.6, 1.85) if kind < 2 else rng.uniform(1.8, 2.0)
        L = (
            rng.uniform(4.3, 5.0),
            rng.uniform(3.6, 4.2),
            rng.uniform(4.4, 5.0),
            rng.uniform(4.8, 5.6),
        )[kind]
        hb = (
            rng.uniform(0.55, 0.7),
            rng.uniform(0.6, 0.75),
            rng.uniform(0.75, 0.95),
            rng.uniform(0.8, 1.0),
        )[kind]
        hcab = (
            rng.uniform(0.45, 0.6),
            rng.uniform(0.5, 0.62),
            rng.uniform(0.6, 0.75),
            rng.uniform(0.9, 1.2),
        )[kind]
        col = self._random_colour() if rng.random() < 0.3 else self._pick(_CARS, 0.06, (0.85, 1.1))
        cab = ((0.25, 0.72), (0.08, 0.7), (0.05, 0.75), (0.02, 0.82))[kind]
        return dict(
            kind=kind,
            w=w,
            L=L,
            hb=hb,
            hcab=hcab,
            col=col,
            cab=cab,
            glass=self._pick(_WINDOWS, 0.1, (0.6, 1.0)),
            front=False,
        )

    def _person_params(self):
        rng = self.rng
        child = rng.random() < 0.12
        return dict(
            H=rng.uniform(1.0, 1.4) if child else rng.uniform(1.55, 1.95),
            view=int(rng.integers(3)),  # front, back, side
            stride=rng.uniform(0.0, 0.45),
            swing=rng.uniform(-0.4, 0.4),
            width=rng.uniform(0.9, 1.2),
            skin=self._pick(_SKIN, 0.04),
            hair=self._pick(_HAIR, 0.05),
            top=self._random_colour(),
            bottom=(self._pick(_TROUSERS, 0.08) if rng.random() < 0.7 else self._random_colour()),
            skirt=rng.random() < 0.15,
            bag=rng.random() < 0.25,
            bag_col=self._random_colour(),
            hat=rng.random() < 0.1,
        )

    # ------------------------------------------------------------------------ rasterising
    def render(self):
        H, W = self.H, self.W
        self.img = np.empty((H, W, 3), np.float32)
        self.mask = np.full((H, W), SKY, np.uint8)
        self.depth = np.full((H, W), np.inf, np.float32)
        if self.photo:
            t = self.trng
            self.n_fine = t.standard_normal((H, W), dtype=np.float32)
            self.n_med = _value_noise(t, H, W, 2.5 * W / 192)
            self.n_coarse = _value_noise(t, H, W, 10 * W / 192)
            self.n_leaf = 0.6 * self.n_fine + 0.7 * self.n_med
        self._draw_sky()
        self._draw_skyline()
        for s in (-1, 1):
            for b in self.back[s]:
                self._draw_building(b, b["z0"], b["z1"], front=True)
            for seg in reversed(self.segs[s]):
                if seg["building"] is not None:
                    self._draw_building(seg["building"], seg["z0"], seg["z1"], front=True)
                if seg["barrier"] is not None:
                    self._draw_barrier(seg["barrier"], seg["z0"], seg["z1"])
        self._draw_ground()
        for _, draw, params in self.objects:
            draw(params)
        return self._finish(), self.mask

    # primitives ---------------------------------------------------------------------------
    def _box(self, x0, x1, y0, y1):
        c0, c1 = max(0, int(np.ceil(x0 - 0.5))), min(self.W, int(np.floor(x1 - 0.5)) + 1)
        r0, r1 = max(0, int(np.ceil(y0 - 0.5))), min(self.H, int(np.floor(y1 - 0.5)) + 1)
        if c1 <= c0 or r1 <= r0:
            return None
        return r0, r1, c0, c1

    def _paint(self, box, m, z, cls, col):
        """Z-buffered write of class `cls` and colour `col` ([3] or broadcastable to [h, w, 3])."""
        r0, r1, c0, c1 = box
        dv = self.depth[r0:r1, c0:c1]
        ok = dv >= z
        if m is not None:
            ok &= m
        if not ok.any():
            return
        dv[ok] = z if np.ndim(z) == 0 else np.broadcast_to(z, ok.shape)[ok]
        self.mask[r0:r1, c0:c1][ok] = cls if np.ndim(cls) == 0 else cls[ok]
        iv = self.img[r0:r1, c0:c1]
        col = np.asarray(col, np.float32)
        iv[ok] = col if col.ndim == 1 else np.broadcast_to(col, iv.shape)[ok]

    def _tex(self, box, col, amp=0.08, field="fine"):
        """Colour with screen-space grain (photo domain only)."""
        if not self.photo or amp <= 0:
            return col
        r0, r1, c0, c1 = box
        n = {"fine": self.n_fine, "med": self.n_med, "leaf": self.n_leaf}[field][r0:r1, c0:c1]
        return col * (1 + amp * n)[..., None]

    def _bb(self, X, z):
        """Billboard at lateral X, depth z: pixel = (px + a * k, py - b * k) for local (a, b) metres."""
        k = self.f / z
        return self.cx + X * k, self.cy + self.hc * k, k

    def _rect(self, px, py, k, a0, a1, b0, b1, z, cls, col, tex=0.0):
        box = self._box(px + a0 * k, px + a1 * k, py - b1 * k, py - b0 * k)
        if box is not None:
            self._paint(box, None, z, cls, self._tex(box, col, tex))
        return box

    def _ellipse(self, x, y, rx, ry, z, cls, col, tex=0.0, field="fine"):
        box = self._box(x - rx, x + rx, y - ry, y + ry)
        if box is None:
            return None
        r0, r1, c0, c1 = box
        m = ((self.xs[None, c0:c1] - x) / rx) ** 2 + ((self.ys[r0:r1, None] - y) / ry) ** 2 <= 1
        self._paint(box, m, z, cls, self._tex(box, col, tex, field))
        return box

    def _poly(self, pts, z, cls, col, tex=0.0):
        """Convex polygon, vertices in pixels [(x, y), ...]."""
        res = self._poly_mask(pts)
        if res is None:
            return None
        box, m = res
        self._paint(box, m, z, cls, self._tex(box, col, tex))
        return box

    def _shade_ground(self, res, factor):
        """Darkens the ground (road, sidewalk, terrain) inside a rasterised shape: contact shadows."""
        if res is None:
            return
        (r0, r1, c0, c1), m = res
        g = self.mask[r0:r1, c0:c1]
        sel = m & (g <= SIDEWALK) | m & (g == TERRAIN)
        self.img[r0:r1, c0:c1][sel] *= factor

    def _poly_mask(self, pts):
        pts = np.asarray(pts, np.float32)
        box = self._box(pts[:, 0].min(), pts[:, 0].max(), pts[:, 1].min(), pts[:, 1].max())
        if box is None:
            return None
        r0, r1, c0, c1 = box
        x, y = self.xs[None, c0:c1], self.ys[r0:r1, None]
        q = np.roll(pts, -1, axis=0)
        area = np.sum(pts[:, 0] * q[:, 1] - q[:, 0] * pts[:, 1])
        sgn = 1.0 if area >= 0 else -1.0
        m = None
        for (ax, ay), (bx, by) in zip(pts, q):
            e = ((bx - ax) * (y - ay) - (by - ay) * (x - ax)) * sgn >= 0
            m = e if m is None else m & e
        return box, m

    def _side_plane(self, X, z0, z1, y0, y1):
        """A vertical plane parallel to the road at lateral X, depth in [z0, z1], height in [y0, y1].

        Returns (box, Z [1, w] per-column depth, V [h, w] world height, inside mask) or None.
        """
        cx, cy, f, hc = self.cx, self.cy, self.f, self.hc
        z0 = max(z0, 0.3)
        if z1 <= z0:
            return None
        xa, xb = cx + f * X / z0, cx + f * X / z1
        c0 = max(0, int(np.ceil(min(xa, xb) - 0.5)))
        c1 = min(self.W, int(np.floor(max(xa, xb) - 0.5)) + 1)
        if c1 <= c0:
            return None
        dx = self.xs[c0:c1] - cx
        with np.errstate(divide="ignore", invalid="ignore"):
            Z = f * X / dx
        valid = (Z >= z0) & (Z <= z1)
        if not valid.any():
            return None
        Z = np.where(valid, Z, z1).astype(np.float32)
        Zv = Z[valid]
        r0 = max(0, int(np.ceil((cy + f * (hc - y1) / Zv).min() - 0.5)))
        r1 = min(self.H, int(np.floor((cy + f * (hc - y0) / Zv).max() - 0.5)) + 1)
        if r1 <= r0:
            return None
        V = hc - (self.ys[r0:r1, None] - cy) * (Z[None, :] / f)
        m = valid[None, :] & (V >= y0) & (V <= y1)
        return (r0, r1, c0, c1), Z[None, :], V, m

    def _front_face(self, X0, X1, y0, y1, z):
        """A vertical plane facing the camera at depth z: (box, U [1, w] lateral, V [h, 1] height)."""
        if z < 0.3:
            return None
        px, py, k = self._bb(0.0, z)
        box = self._box(px + min(X0, X1) * k, px + max(X0, X1) * k, py - y1 * k, py - y0 * k)
        if box is None:
            return None
        r0, r1, c0, c1 = box
        U = (self.xs[None, c0:c1] - px) / k
        V = (py - self.ys[r0:r1, None]) / k
        return box, U, V

    # scene parts ----------------------------------------------------------------------------
    def _draw_sky(self):
        t = np.clip((self.cy - self.ys) / max(self.cy, 1.0), 0, 1)[:, None, None] ** 0.6
        col = self.sky_horizon * (1 - t) + self.sky_zenith * t
        if self.photo:
            c = np.clip((0.7 * self.n_coarse + 0.3 * self.n_med - 0.5 + self.clouds) * 1.5, 0, 1)
            c = (c * np.clip(t[..., 0] * 3, 0, 1))[..., None]
            cloud = np.clip(self.sky_horizon * 1.1 + 0.1, 0, 1)
            col = col * (1 - c) + cloud * (c * (0.85 + 0.15 * self.n_med[..., None]))
        self.img[:] = col

    def _draw_skyline(self):
        z = self.sky_z
        for it in self.skyline:
            px, py, k = self._bb(0.0, z)
            if it["kind"] == "tree":
                w = it["x1"] - it["x0"]
                h = min(it["h"], w * 0.8)
                self._ellipse(
                    px + (it["x0"] + w / 2) * k,
                    py - h / 2 * k,
                    w / 2 * k,
                    h / 2 * k + 0.5,
                    z,
                    VEGETATION,
                    it["col"],
                    0.15,
                    "leaf",
                )
            else:
                self._rect(
                    px, py, k, it["x0"], it["x1"], -1.0, it["h"], z, BUILDING, it["col"], 0.04
                )

    def _face_shade(self, s):
        if not self.photo:
            return 0.85 if s < 0 else 1.0
        if s == -self.sun_side:
            return 1.05 if self.sunny else 1.0
        return self.shadow if self.sunny else 0.9

    def _facade(self, b, box, U, V, depth, shade):
        """Colours of a building face at world coords (U along the face, V height)."""
        r0, r1, c0, c1 = box
        shape = (r1 - r0, c1 - c0)
        U = np.broadcast_to(U, shape)
        V = np.broadcast_to(V, shape)
        base = b["col"]
        iu = np.floor((U - b["wo"]) / b["ws"])
        jv = np.floor((V - b["gf"]) / b["fh"])
        fu = (U - b["wo"]) / b["ws"] - iu
        fv = (V - b["gf"]) / b["fh"] - jv
        upper = (V > b["gf"]) & (V < b["h"] - 0.7)
        if b["style"] == "glass":
            win = upper & (fu > 0.05) & (fv > 0.06)
        else:
            win = upper & (fu < b["wfw"]) & (fv > b["wb0"]) & (fv < b["wb0"] + b["wfh"])
        shop = None
        if b["shop"]:
            su = (U / b["shop_w"]) % 1.0
            shop = (V > 0.25) & (V < b["gf"] - 0.7) & (su > 0.12) & (su < 0.88)
        if not self.photo:
            col = np.empty(shape + (3,), np.float32)
            col[:] = base
            col[win] = b["win"]
            if shop is not None:
                col[shop] = b["win"] * 0.8
                col[(V >= b["gf"] - 0.7) & (V < b["gf"] - 0.3)] = b["shop_col"]
            return col * shade
        fp = depth / self.f  # metres per pixel
        style = b["style"]
        t = 0.05 * self.n_fine[r0:r1, c0:c1] + b["stain"] * 0.5 * self.n_coarse[r0:r1, c0:c1]
        if style == "brick":
            bh = b["brick"]
            row = np.floor(V / bh)
            bu = U / (2.2 * bh) + 0.5 * (row % 2)
            mortar = ((V / bh - row) < 0.15) | ((bu - np.floor(bu)) < 0.08)
            amp = np.clip(bh / fp - 1.5, 0, 1)
            t = t + amp * (0.12 * (_hash(row, np.floor(bu), b["salt"]) - 0.5) - 0.2 * mortar)
        elif style in ("concrete", "dark"):
            pu, pv = (U / b["panel"]) % 1.0, (V / (b["panel"] * 0.8)) % 1.0
            amp = np.clip(0.4 / fp - 0.5, 0, 1)
            t = t - 0.15 * amp * ((pu < 0.03) | (pv < 0.04)) + 0.08 * self.n_med[r0:r1, c0:c1]
        elif style == "plaster":
            t = t + 0.08 * self.n_med[r0:r1, c0:c1] - 0.15 * np.clip(1 - V / 2.5, 0, 1)
        col = base * (1 + t)[..., None]
        if b["cornice"]:
            col = np.where(
                ((V > b["h"] - 0.5) | ((V > b["gf"] - 0.25) & (V < b["gf"])))[..., None],
                b["frame"] * 0.9,
                col,
            )
        hv = _hash(iu, jv, b["salt"])[..., None]
        sky_v = np.clip(V / (b["h"] + 1), 0, 1)[..., None]
        wcol = b["win"] * (0.6 + 0.7 * hv) * (1 - 0.4 * sky_v) + self.sky_horizon * 0.45 * sky_v
        if b["lit"] > 0:
            wcol = np.where(hv > 1 - b["lit"], _cols(255, 220, 140), wcol)
        if style == "glass":
            wcol = wcol * 0.6 + self.sky_zenith * 0.25 + 0.15 * base
            frame = base * 0.6
        else:
            frame = b["frame"]
            # window frames: a rim around each window
            rim = (
                upper
                & (fu < b["wfw"] + 0.08)
                & (fv > b["wb0"] - 0.04)
                & (fv < b["wb0"] + b["wfh"] + 0.04)
            )
            col = np.where((rim & ~win)[..., None], frame, col)
        col = np.where(win[..., None], wcol, col)
        if shop is not None:
            scol = b["win"] * 0.7 + 0.15 * self.sky_horizon
            col = np.where(
                shop[..., None], scol * (1 + 0.2 * self.n_med[r0:r1, c0:c1])[..., None], col
            )
            awn = (V >= b["gf"] - 0.7) & (V < b["gf"] - 0.3)
            col = np.where(awn[..., None], b["shop_col"], col)
        return col * shade

    def _draw_building(self, b, z0, z1, front=True):
        s = b["s"]
        res = self._side_plane(b["X"], z0, z1, 0.0, b["h"])
        if res is not None:
            box, Z, V, m = res
            self._paint(box, m, Z, BUILDING, self._facade(b, box, Z, V, Z, self._face_shade(s)))
        if front and z0 > 0.6:
            res = self._front_face(b["X"], b["X"] + s * b["depth"], 0.0, b["h"], z0)
            if res is not None:
                box, U, V = res
                shade = self.front_shade if self.photo else 0.75
                self._paint(box, None, z0, BUILDING, self._facade(b, box, U * s, V, z0, shade))

    def _draw_barrier(self, w, z0, z1):
        top = w["h"] + (w.get("wob", 0) if w["kind"] == "hedge" else 0)
        res = self._side_plane(w["X"], z0, z1, 0.0, top)
        if res is None:
            return
        box, Z, V, m = res
        r0, r1, c0, c1 = box
        U = np.broadcast_to(Z, V.shape)
        if w["kind"] == "hedge":
            m = m & (V <= w["h"] + w["wob"] * np.sin(U * w["freq"] * 3 + w["salt"] % 7))
        shade = self._face_shade(int(np.sign(w["X"])))
        col = np.empty(V.shape + (3,), np.float32)
        col[:] = w["col"]
        if w["kind"] == "fence":
            u = (U / w["period"]) % 1.0
            if w["pattern"] == 0:  # planks
                dark = u < 0.12
            elif w["pattern"] == 1:  # bars: dark gaps between bars
                dark = u < 0.5
            else:  # rails and posts
                dark = ~(
                    (np.abs(V - w["h"] * 0.85) < 0.06)
                    | (np.abs(V - w["h"] * 0.25) < 0.06)
                    | ((U / w["post"]) % 1.0 < 0.06)
                )
            if self.photo:
                # fine periodic structure averages out with distance
                a = np.clip(w["period"] * self.f / Z / 2 - 0.5, 0, 1) if w["pattern"] < 2 else 1.0
                col = col * (1 - 0.55 * a * dark)[..., None]
            else:
                col[dark] *= 0.6
        elif w["kind"] == "wall":
            if w["pattern"] == 1:  # horizontal courses / blocks
                col[((V / w["period"]) % 1.0) < 0.1] *= 0.8
            elif w["pattern"] == 2:  # vertical panels
                col[((U / w["period"]) % 1.0) < 0.06] *= 0.75
            col[V > w["h"] - 0.12] *= 1.15  # coping
            if self.photo:
                col = (
                    col
                    * (1 + 0.08 * self.n_fine[r0:r1, c0:c1] + 0.1 * self.n_med[r0:r1, c0:c1])[
                        ..., None
                    ]
                )
                if w["graffiti"]:
                    g = (self.n_coarse[r0:r1, c0:c1] > 0.35) & (V < 1.8)
                    col = np.where(g[..., None], w["gcol"], col)
        else:
            col = self._tex(box, col, 0.35, "leaf")
        self._paint(box, m, Z, w["cls"], col * shade)

    def _draw_ground(self):
        H, W, f, hc, cx, cy = self.H, self.W, self.f, self.hc, self.cx, self.cy
        r0 = max(0, int(np.ceil(cy + 0.3 - 0.5)))
        if r0 >= H:
            return
        dy = np.maximum(self.ys[r0:] - cy, 0.05)
        zr = np.minimum(f * hc / dy, 5000.0).astype(np.float32)  # depth per row
        Z = zr[:, None]
        X = (self.xs[None, :] - cx) * (Z / f)
        cls = np.full(X.shape, ROAD, np.uint8)
        caster_x = np.full(zr.shape, np.inf, np.float32)
        caster_h = np.zeros(zr.shape, np.float32)
        for s in (-1, 1):
            segs = self.segs[s]
            idx = np.searchsorted(np.array([g["z1"] for g in segs]), zr)
            gtab = np.array([g["ground"] for g in segs] + [TERRAIN], np.uint8)[idx]
            street = gtab == ROAD
            rel = (X - self.edge(s)) * s
            beyond = rel > 0
            walk = beyond & (rel < self.sw[s]) & ~street[:, None]
            cls = np.where(walk, SIDEWALK, np.where(beyond & ~walk, gtab[:, None], cls))
            if self.verge[s] > 0:
                cls = np.where(walk & (rel > 0.25) & (rel < self.verge[s]), TERRAIN, cls)
            if s == self.sun_side:
                xs, hs = [], []
                for g in segs:
                    b, w = g["building"], g["barrier"]
                    if b is not None:
                        xs.append(b["X"] * s)
                        hs.append(b["h"])
                    elif w is not None:
                        xs.append(w["X"] * s)
                        hs.append(w["h"])
                    else:
                        xs.append(np.inf)
                        hs.append(0.0)
                caster_x = np.array(xs + [np.inf], np.float32)[idx] * s
                caster_h = np.array(hs + [0.0], np.float32)[idx]
        table = np.stack([self.road_col, self.sidewalk_col, self.terrain_col])
        which = np.where(cls == ROAD, 0, np.where(cls == SIDEWALK, 1, 2))
        col = table[which]
        road = cls == ROAD
        main = (X > self.XL) & (X < self.XR)
        kerb = (~road) & (np.minimum(np.abs(X - self.XL), np.abs(X - self.XR)) < 0.22) & ~main
        fpx = Z / f  # metres per pixel across
        fpz = Z * Z / (f * hc)  # metres per pixel along the road
        marks = self._markings(X, Z, fpx, fpz) * main
        if not self.photo:
            col[kerb] = self.kerb_col
            m = marks > 0.45
            col[m] = (
                self.marking_col
                if self.centre_col is self.marking_col
                else np.where(self._centre_zone(X)[m][:, None], self.centre_col, self.marking_col)
            )
        else:
            rows = slice(r0, H)
            fine, med, coarse = self.n_fine[rows], self.n_med[rows], self.n_coarse[rows]
            t = np.zeros(X.shape, np.float32)
            # asphalt grain, repair patches and darker tyre tracks
            lane_rel = ((X - self.XL) / self.lane_w) % 1.0
            tracks = np.exp(-(((np.abs(lane_rel - 0.5) * self.lane_w - 0.8) / 0.35) ** 2))
            t_road = self.grain * fine + 0.06 * med - self.patches * (coarse > 0.45) - 0.08 * tracks
            # sidewalk tiles with per-tile shade and grout lines
            ti, tj = np.floor(X / self.tile), np.floor(Z / self.tile)
            tv = _hash(ti, tj, self.salt) - 0.5
            amp = np.clip(self.tile / fpz - 1, 0, 1)
            grout = ((X / self.tile - ti) < 0.08) | ((Z / self.tile - tj) < 0.08 * amp)
            t_walk = 0.04 * fine + amp * (self.tile_amp * tv - 0.12 * grout)
            t_terr = 0.12 * fine + 0.15 * med + 0.1 * coarse
            t = np.where(road, t_road, np.where(cls == SIDEWALK, t_walk, t_terr))
            col = col * (1 + t)[..., None]
            col[kerb] = self.kerb_col * (1 + 0.05 * fine[kerb])[:, None]
            mcol = np.where(self._centre_zone(X)[..., None], self.centre_col, self.marking_col)
            a = (marks * self.marking_fade)[..., None]
            col = col * (1 - a) + mcol * a
            if self.sunny:
                shadowed = (caster_x[:, None] - X) * self.sun_side < caster_h[:, None] * self.sun_k
                col = np.where(shadowed[..., None], col * self.shadow, col)
        self._paint((r0, H, 0, W), None, Z, cls, col)

    def _centre_zone(self, X):
        if not self.two_way:
            return np.zeros(X.shape, bool)
        xc = self.XL + (self.n_lanes // 2) * self.lane_w
        return np.abs(X - xc) < 0.5

    def _markings(self, X, Z, fpx, fpz):
        """Coverage in [0, 1] of painted road markings (box-filtered by the pixel footprint)."""

        def line(xk, hw):
            d = np.abs(X - xk)
            return (
                np.clip(np.minimum(d + fpx / 2, hw) - np.maximum(d - fpx / 2, -hw), 0, None) / fpx
            )

        def dashes(period, duty):
            hard = ((Z / period) % 1.0) < duty
            w = np.clip(fpz / period, 0, 1)
            return hard * (1 - w) + duty * w

        cov = np.zeros(X.shape, np.float32)
        n, lw = self.n_lanes, self.lane_w
        dash = dashes(self.dash_period, self.dash_duty)
        for k in range(1, n):
            xk = self.XL + k * lw
            if self.two_way and k == n // 2:
                if self.centre_double:
                    cov = np.maximum(cov, np.maximum(line(xk - 0.12, 0.06), line(xk + 0.12, 0.06)))
                else:
                    cov = np.maximum(cov, line(xk, 0.08))
            else:
                cov = np.maximum(cov, line(xk, 0.07) * dash)
        if self.edge_lines:
            cov = np.maximum(cov, np.maximum(line(self.XL + 0.3, 0.08), line(self.XR - 0.3, 0.08)))
        if self.zebra is not None:
            inz = (Z > self.zebra) & (Z < self.zebra + 3.5)
            hard = (((X - self.XL) / 1.0) % 1.0) < 0.5
            w = np.clip(fpx, 0, 1)
            cov = np.where(inz, np.maximum(cov, hard * (1 - w) + 0.5 * w), cov)
        return cov

    # objects ---------------------------------------------------------------------------------
    def _draw_lamp(self, o):
        px, py, k = self._bb(o["X"], o["z"])
        z, h, w, arm, col = o["z"], o["h"], o["w"], o["arm"], self.pole_col
        self._rect(px, py, k, -w / 2, w / 2, 0, h, z, POLE, col, 0.05)
        self._rect(px, py, k, min(0, arm), max(0, arm), h - 0.12, h, z, POLE, col)
        self._rect(px, py, k, arm - 0.3, arm + 0.3, h - 0.3, h + 0.05, z, POLE, col * 0.8)
        self._rect(
            px, py, k, arm - 0.2, arm + 0.2, h - 0.3, h - 0.22, z, POLE, _cols(250, 245, 220)
        )

    def _draw_sign(self, o):
        px, py, k = self._bb(o["X"], o["z"])
        z, h, r = o["z"], o["h"], o["size"] / 2
        self._rect(px, py, k, -0.04, 0.04, 0, h + r, z, POLE, self.pole_col * 0.9, 0.05)
        cy = py - (h + r) * k
        red, white, blue = _cols(200, 30, 30), _cols(235, 235, 230), _cols(30, 70, 160)
        if o["back"]:
            self._rect(px, py, k, -r, r, h, h + 2 * r, z, TRAFFIC_SIGN, _cols(150, 150, 150), 0.05)
            return
        shape = o["shape"]
        if shape in (0, 1):  # prohibition / mandatory discs
            self._ellipse(px, cy, r * k, r * k, z, TRAFFIC_SIGN, red if shape == 0 else blue, 0.03)
            if shape == 0:
                self._ellipse(px, cy, 0.75 * r * k, 0.75 * r * k, z, TRAFFIC_SIGN, white, 0.03)
            else:
                self._rect(
                    px, py, k, -0.5 * r, 0.5 * r, h + 0.9 * r, h + 1.1 * r, z, TRAFFIC_SIGN, white
                )
        elif shape in (2, 3):  # warning / give way triangles
            d = 1 if shape == 2 else -1
            tri = lambda q: [
                (px - q * k, cy + d * 0.6 * q * k),
                (px + q * k, cy + d * 0.6 * q * k),
                (px, cy - d * 1.1 * q * k),
            ]
            self._poly(tri(r * 1.05), z, TRAFFIC_SIGN, red)
            self._poly(tri(r * 0.7), z, TRAFFIC_SIGN, white if shape == 3 else _cols(245, 210, 60))
        elif shape == 4:  # stop octagon
            a = np.arange(8) * np.pi / 4 + np.pi / 8
            self._poly(
                np.stack([px + r * k * np.cos(a), cy + r * k * np.sin(a)], 1), z, TRAFFIC_SIGN, red
            )
            self._rect(
                px, py, k, -0.6 * r, 0.6 * r, h + 0.85 * r, h + 1.15 * r, z, TRAFFIC_SIGN, white
            )
        else:  # information rectangle
            c = [blue, _cols(20, 110, 60), white][int(o["z"] * 7) % 3]
            self._rect(
                px, py, k, -1.2 * r, 1.2 * r, h + 0.2 * r, h + 1.8 * r, z, TRAFFIC_SIGN, white
            )
            self._rect(
                px, py, k, -1.1 * r, 1.1 * r, h + 0.3 * r, h + 1.7 * r, z, TRAFFIC_SIGN, c, 0.03
            )

    def _draw_light(self, o):
        z, h = o["z"], o["h"]
        px, py, k = self._bb(o["X"], z)
        self._rect(
            px, py, k, -0.07, 0.07, 0, h + (1.5 if o["over"] else 0), z, POLE, self.pole_col, 0.05
        )
        boxes = [(0.0, h)]
        if o["over"]:
            a = -o["s"] * o["over"]
            self._rect(px, py, k, min(0, a), max(0, a), h + 1.4, h + 1.55, z, POLE, self.pole_col)
            boxes.append((a, h + 0.4))
        lamp_cols = (_cols(255, 40, 30), _cols(255, 190, 20), _cols(40, 255, 120))
        for a, b in boxes:
            self._rect(
                px, py, k, a - 0.17, a + 0.17, b, b + 0.95, z, TRAFFIC_LIGHT, o["housing"], 0.05
            )
            for i in range(3):
                on = i == o["state"]
                c = lamp_cols[i] if on else lamp_cols[i] * 0.25 + 0.05
                yy = py - (b + 0.78 - 0.3 * i) * k
                self._ellipse(px + a * k, yy, 0.11 * k, 0.11 * k, z, TRAFFIC_LIGHT, c)

    def _draw_tree(self, o):
        z = o["z"]
        px, py, k = self._bb(o["X"], z)
        R, col = o["R"], o["col"]
        if o["bush"]:
            R = R * 0.5
            for bx, by, rx, ry in o["blobs"]:
                self._ellipse(
                    px + bx * R * 0.6 * k,
                    py - (R * 0.55 + by * 0.2 * R) * k,
                    R * (0.7 + 0.2 * rx) * k + 0.3,
                    R * (0.5 + 0.15 * ry) * k + 0.3,
                    z,
                    VEGETATION,
                    col * (0.9 + 0.1 * ry),
                    0.4,
                    "leaf",
                )
            return
        th = o["trunk_h"]
        if o["conifer"]:
            self._rect(
                px, py, k, -o["trunk_w"] / 2, o["trunk_w"] / 2, 0, th, z, VEGETATION, o["bark"], 0.1
            )
            top = th + 3.2 * R
            for i in range(3):
                b0, b1 = th + i * R * 0.9, top - (2 - i) * 0.2 * R
                wd = R * (1 - 0.25 * i)
                self._poly(
                    [(px - wd * k, py - b0 * k), (px + wd * k, py - b0 * k), (px, py - b1 * k)],
                    z,
                    VEGETATION,
                    col * (0.8 + 0.1 * i),
                    0.3,
                )
            return
        cyc = th + R * 0.8
        self._rect(
            px, py, k, -o["trunk_w"] / 2, o["trunk_w"] / 2, 0, cyc, z, VEGETATION, o["bark"], 0.1
        )
        for i, (bx, by, rx, ry) in enumerate(o["blobs"]):
            shade = 0.75 + 0.1 * i / len(o["blobs"]) + 0.15 * (by > 0)
            self._ellipse(
                px + bx * 0.55 * R * k,
                py - (cyc + by * 0.45 * R) * k,
                R * (0.65 + 0.15 * rx) * k + 0.3,
                R * (0.6 + 0.15 * ry) * k + 0.3,
                z,
                VEGETATION,
                col * shade,
                0.45,
                "leaf",
            )

    def _draw_car(self, o):
        z, X, w, L, hb, hcab = o["z"], o["X"], o["w"], o["L"], o["hb"], o["hcab"]
        col, glass, front = o["col"], o["glass"], o["front"]
        clear = 0.28
        vb = clear + hb
        dark = _cols(25, 25, 28)
        px, py, k = self._bb(X, z)
        if self.photo:  # shadow / ambient occlusion on the ground under the car
            off = -self.sun_side * min(self.sun_k, 1.2) * 0.6 if self.sunny else 0.0
            a0, a1 = X - w / 2 - 0.1 + min(off, 0), X + w / 2 + 0.1 + max(off, 0)
            z0, z1 = max(z - 0.15, 0.5), z + L
            g = lambda a, zz: (self.cx + self.f * a / zz, self.cy + self.f * self.hc / zz)
            self._shade_ground(
                self._poly_mask([g(a0, z0), g(a1, z0), g(a1, z1), g(a0, z1)]),
                self.shadow * 0.9 if self.sunny else 0.55,
            )
        # side face (the one facing the camera axis)
        sgn = 1 if X > 0 else -1
        Xs = X - sgn * w / 2
        if Xs * sgn > 0.05:
            res = self._side_plane(Xs, z, z + L, 0.0, vb + hcab)
            if res is not None:
                box, Z, V, m = res
                u = (z + L) - Z if front else Z - z  # distance from the car's rear
                u = np.broadcast_to(u, V.shape)
                a0, a1 = o["cab"][0] * L, o["cab"][1] * L
                body = (V >= clear) & (V <= vb)
                cv = V - vb
                cab = (cv > 0) & (cv <= hcab) & (u >= a0 + cv * 0.5) & (u <= a1 - cv * 0.9)
                wheel = (((u - 0.75) / 0.33) ** 2 + ((V - 0.33) / 0.33) ** 2 <= 1) | (
                    ((u - (L - 0.85)) / 0.33) ** 2 + ((V - 0.33) / 0.33) ** 2 <= 1
                )
                win = (
                    (cv > 0.06)
                    & (cv <= hcab - 0.05)
                    & (u >= a0 + cv * 0.5 + 0.12)
                    & (u <= a1 - cv * 0.9 - 0.12)
                )
                shape = (body | cab | wheel) & m
                c = np.empty(V.shape + (3,), np.float32)
                c[:] = col * (0.8 if self.photo else 0.85)
                if self.photo:
                    c *= (0.85 + 0.3 * np.clip((V - clear) / hb, 0, 1))[..., None]
                c[win] = glass
                c[wheel] = dark
                self._paint(box, shape, Z, CAR, self._tex(box, c, 0.03))
        # rear (or front) face
        hw = w / 2
        body_c = col * (1.0 if self.photo else 0.95)
        self._rect(px, py, k, -hw + 0.08, -hw + 0.33, 0.0, 0.45, z, CAR, dark)
        self._rect(px, py, k, hw - 0.33, hw - 0.08, 0.0, 0.45, z, CAR, dark)
        box = self._rect(px, py, k, -hw, hw, clear, vb, z, CAR, body_c, 0.03)
        if box is not None and self.photo:  # vertical reflection gradient on the body
            r0, r1, c0, c1 = box
            g = np.linspace(0.8, 1.15, r1 - r0, dtype=np.float32)[::-1][:, None, None]
            sel = self.mask[r0:r1, c0:c1] == CAR
            self.img[r0:r1, c0:c1] = np.where(
                sel[..., None] & (self.depth[r0:r1, c0:c1] == z)[..., None],
                self.img[r0:r1, c0:c1] * g,
                self.img[r0:r1, c0:c1],
            )
        self._rect(px, py, k, -hw, hw, clear, clear + 0.12, z, CAR, dark * 2)  # bumper
        inset = 0.08 if o["kind"] == 3 else 0.18
        cab = [
            (px + (-hw + 0.06) * k, py - vb * k),
            (px + (hw - 0.06) * k, py - vb * k),
            (px + (hw - inset - 0.08) * k, py - (vb + hcab) * k),
            (px + (-hw + inset + 0.08) * k, py - (vb + hcab) * k),
        ]
        self._poly(cab, z, CAR, col * 0.95)
        g0, g1 = 0.06, 0.07
        win = [
            (px + (-hw + 0.14) * k, py - (vb + g0) * k),
            (px + (hw - 0.14) * k, py - (vb + g0) * k),
            (px + (hw - inset - 0.14) * k, py - (vb + hcab - g1) * k),
            (px + (-hw + inset + 0.14) * k, py - (vb + hcab - g1) * k),
        ]
        self._poly(win, z, CAR, glass)
        lc = _cols(245, 240, 215) if front else _cols(200, 20, 20)
        for a in (-hw + 0.05, hw - 0.3):
            self._rect(px, py, k, a, a + 0.25, vb - 0.22, vb - 0.07, z, CAR, lc)
        self._rect(px, py, k, -0.25, 0.25, clear + 0.15, clear + 0.27, z, CAR, _cols(230, 230, 225))

    def _draw_person(self, o):
        z, Hh = o["z"], o["H"]
        px, py, k = self._bb(o["X"], z)
        if self.photo:
            rx, ry = (0.25 + o["stride"] * 0.4) * Hh * k + 0.3, 0.06 * Hh * k + 0.3
            box = self._box(px - rx, px + rx, py - ry, py + ry)
            if box is not None:
                r0, r1, c0, c1 = box
                m = ((self.xs[None, c0:c1] - px) / rx) ** 2 + (
                    (self.ys[r0:r1, None] - py) / ry
                ) ** 2 <= 1
                self._shade_ground((box, m), 0.7)
        P = lambda pts: [(px + a * Hh * k, py - b * Hh * k) for a, b in pts]
        wd = o["width"] * (0.6 if o["view"] == 2 else 1.0)
        stride, swing = o["stride"], o["swing"]
        if o["view"] != 2:
            stride, swing = stride * 0.3, swing * 0.3
        hip, sh = 0.52, 0.82
        # legs (bottom colour), feet
        for sgn in (-1, 1):
            hx = sgn * 0.045 * wd
            fx = hx + sgn * stride * 0.48
            self._poly(
                P([(hx - 0.04, hip), (hx + 0.04, hip), (fx + 0.03, 0.02), (fx - 0.035, 0.02)]),
                z,
                PERSON,
                o["bottom"],
                0.05,
            )
            self._poly(
                P([(fx - 0.04, 0.035), (fx + 0.05, 0.035), (fx + 0.05, 0.0), (fx - 0.04, 0.0)]),
                z,
                PERSON,
                _cols(30, 30, 30),
            )
        if o["skirt"]:
            self._poly(
                P(
                    [
                        (-0.09 * wd, hip + 0.06),
                        (0.09 * wd, hip + 0.06),
                        (0.14 * wd, 0.32),
                        (-0.14 * wd, 0.32),
                    ]
                ),
                z,
                PERSON,
                o["bottom"],
                0.05,
            )
        # back arm, torso, front arm
        arm = lambda sgn, sw: P(
            [
                (sgn * 0.12 * wd - 0.025, sh - 0.01),
                (sgn * 0.12 * wd + 0.025, sh - 0.01),
                (sgn * 0.13 * wd + sw * 0.3 + 0.02, 0.48),
                (sgn * 0.13 * wd + sw * 0.3 - 0.025, 0.48),
            ]
        )
        self._poly(arm(-1, -swing), z, PERSON, o["top"] * 0.85, 0.05)
        self._poly(
            P([(-0.13 * wd, sh), (0.13 * wd, sh), (0.1 * wd, hip), (-0.1 * wd, hip)]),
            z,
            PERSON,
            o["top"],
            0.06,
        )
        if o["bag"]:
            ax = 0.1 * wd if o["view"] == 2 else 0.09 * wd
            self._rect(
                px,
                py,
                k,
                (ax - 0.05) * Hh,
                (ax + 0.09) * Hh,
                0.55 * Hh,
                0.75 * Hh,
                z,
                PERSON,
                o["bag_col"],
                0.05,
            )
        self._poly(arm(1, swing), z, PERSON, o["top"] * 0.95, 0.05)
        for sgn, sw in ((-1, -swing), (1, swing)):  # hands
            self._ellipse(
                px + (sgn * 0.13 * wd + sw * 0.3) * Hh * k,
                py - 0.47 * Hh * k,
                0.025 * Hh * k + 0.2,
                0.03 * Hh * k + 0.2,
                z,
                PERSON,
                o["skin"],
            )
        # neck, head, hair
        self._rect(
            px, py, k, -0.025 * Hh, 0.025 * Hh, sh * Hh, 0.87 * Hh, z, PERSON, o["skin"] * 0.9
        )
        hx = 0.01 if o["view"] == 2 else 0.0
        head = (px + hx * Hh * k, py - 0.93 * Hh * k, 0.055 * Hh * k + 0.3, 0.07 * Hh * k + 0.3)
        self._ellipse(*head, z, PERSON, o["skin"] if o["view"] != 1 else o["hair"], 0.04)
        if o["hat"]:
            self._rect(
                px, py, k, -0.07 * Hh, 0.07 * Hh, 0.975 * Hh, 1.0 * Hh, z, PERSON, o["top"] * 0.5
            )
        elif o["view"] != 1:
            self._ellipse(
                head[0],
                head[1] - 0.035 * Hh * k,
                head[2],
                0.045 * Hh * k + 0.2,
                z,
                PERSON,
                o["hair"],
            )

    # camera response ---------------------------------------------------------------------------
    def _apply_condition(self, img):
        """Weather and time of day: overcast and rain grey the scene (rain also wets the ground
        and streaks the air), dusk warms and darkens it, night darkens it and lights windows and
        traffic lights. Fog is the short visibility of the haze."""
        cond, k, m = self.condition, self.cond_strength, self.mask
        if cond in ("overcast", "rain", "fog"):
            grey = img.mean(-1, keepdims=True)
            img = (grey + (img - grey) * (1 - 0.5 * k)) * (1 - 0.3 * k)
            sky = (m == SKY)[..., None]
            img = np.where(sky, grey * 0.3 + 0.55 + 0.2 * self.cond_phase, img)
        if cond == "rain":
            wet = np.isin(m, (ROAD, SIDEWALK))[..., None]
            shine = np.clip(0.5 + 0.5 * self.n_coarse, 0, 1)[..., None] * 0.25 * k
            img = np.where(wet, img * (1 - 0.4 * k) + shine * self.sky_horizon.mean(), img)
            crng = np.random.default_rng([self.seed, 0xC0D2])  # the streaks' own stream
            drops = (crng.random((self.H, self.W)) < 0.004 * k).astype(np.float32)
            length = max(2, self.H // 10)
            slant = crng.uniform(-0.4, 0.4)
            streaks = sum(np.roll(drops, (j, round(j * slant)), axis=(0, 1)) for j in range(length))
            img = img + 0.12 * np.clip(streaks, 0, 1)[..., None]
        if cond == "dusk":
            img = img * np.array([1.15, 0.85, 0.6], np.float32) * (1 - 0.45 * k)
        if cond == "night":
            dark = np.array([0.55, 0.7, 1.0], np.float32) * (0.2 + 0.15 * (1 - k))
            glow = np.zeros_like(img)
            lit = (m == BUILDING) & (self.n_med > 0.35 + 0.4 * self.cond_phase)
            glow[lit] = np.array([1.0, 0.8, 0.45], np.float32) * 0.6
            ground = np.isin(m, (ROAD, SIDEWALK, TERRAIN))
            pools = np.clip(self.n_coarse, 0, 1)[ground][:, None]
            glow[ground] = pools * np.array([0.35, 0.27, 0.15], np.float32) * img[ground]
            lights = m == TRAFFIC_LIGHT
            glow[lights] = img[lights]
            sky = (m == SKY)[..., None]
            img = np.where(sky, np.array([0.02, 0.03, 0.07], np.float32), img * dark)
            img = img + glow + 0.5 * _gauss_blur(glow, 1.5 * self.W / 192)
        return img

    def _finish(self):
        img = self.img
        if not self.photo:
            return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)
        d = self.depth
        cond, k = self.condition, self.cond_strength
        visibility = 8 + 40 * (1 - k) if cond == "fog" else self.visibility
        haze_col = self.sky_horizon
        if cond in ("overcast", "rain", "fog"):
            haze_col = np.full(3, 0.55 + 0.25 * self.cond_phase, np.float32)
        haze = np.where(np.isfinite(d), 1 - np.exp(-np.minimum(d, 1e4) / visibility), 0.0)
        img = img * (1 - haze[..., None]) + haze_col * haze[..., None]
        img = self._apply_condition(img)
        img = img * (self.exposure * self.wb)
        mean = img.mean()
        img = (img - mean) * self.contrast + mean
        grey = img.mean(-1, keepdims=True)
        img = grey + (img - grey) * self.saturation
        img = np.clip(img, 0, 1) ** self.gamma
        if self.vignette > 0:
            ry = ((self.ys - self.H / 2) / (self.H / 2)) ** 2
            rx = ((self.xs - self.W / 2) / (self.W / 2)) ** 2
            img = img * (1 - self.vignette * 0.5 * (ry[:, None] + rx[None, :]))[..., None]
        img = _gauss_blur(img.astype(np.float32), self.blur)
        t = self.trng
        noise = self.noise * (3.0 if self.condition == "night" else 1.0)
        img = img + noise * (
            t.standard_normal(img.shape[:2], dtype=np.float32)[..., None]
            + 0.5 * t.standard_normal(img.shape, dtype=np.float32)
        )
        return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)


def render_scene(seed: int, height: int, width: int, domain: str = "photo"):
    """Renders one scene: (image uint8 [H, W, 3], mask uint8 [H, W] with values in [0, NUM_CLASSES)).

    Deterministic in `seed`; `domain` (one of DOMAINS) changes the appearance only, never the
    mask.
    """
    if domain not in DOMAINS:
        raise ValueError(f"domain must be one of {DOMAINS}, got {domain!r}")
    if height < 8 or width < 8:
        raise ValueError(f"image too small: {height}x{width}")
    return _Scene(seed, height, width, domain).render()


# ----------------------------------------------------------------------------------- TFDS
def example_seed(seed: int, split: str, index: int) -> int:
    """The render seed of example `index` of `split`: distinct across splits and data-set seeds."""
    if seed < 0 or index < 0 or index >= 2**31:
        raise ValueError(f"need seed >= 0 and 0 <= index < 2**31, got {seed}, {index}")
    return int(seed) * 2**32 + _SPLIT_CODES[split] * 2**31 + int(index)


def _png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def _make_example(job):
    split, index, seed, height, width, domain = job
    image, mask = render_scene(example_seed(seed, split, index), height, width, domain)
    classes = (np.bincount(mask.ravel(), minlength=NUM_CLASSES) > 0).astype(np.uint8)
    key = f"{split}_{index:06d}"
    return key, {"image": _png(image), "mask": _png(mask), "id": key, "classes": classes}


def _num_workers(num_examples: int) -> int:
    """Worker processes for rendering: $CPS_DATA_WORKERS, else up to 2 forked workers.

    Forking a process that has JAX loaded may deadlock, so then (and where fork is missing) the
    examples are rendered in this process (about 20 ms each at 96x192).
    """
    env = os.environ.get("CPS_DATA_WORKERS")
    if env:
        return max(1, int(env))
    if (
        num_examples < 64
        or "jax" in sys.modules
        or "fork" not in multiprocessing.get_all_start_methods()
    ):
        return 1
    return max(1, min(2, os.cpu_count() or 1))


class SyntheticStreetsConfig(tfds.core.BuilderConfig):
    """Image size, number of examples per split, domain and seed of a `synthetic_streets` build."""

    def __init__(
        self,
        *,
        height: int = 96,
        width: int = 192,
        num_train: int = 1000,
        num_validation: int = 200,
        domain: str = "photo",
        seed: int = 0,
        **kwargs,
    ):
        if domain not in DOMAINS:
            raise ValueError(f"domain must be one of {DOMAINS}, got {domain!r}")
        name = kwargs.pop("name", None) or config_name(
            height, width, num_train, num_validation, domain, seed
        )
        kwargs.setdefault(
            "description",
            f"{height}x{width} {domain} scenes, {num_train} train / "
            f"{num_validation} validation, seed {seed}",
        )
        super().__init__(name=name, **kwargs)
        self.height, self.width = int(height), int(width)
        self.num_train, self.num_validation = int(num_train), int(num_validation)
        self.domain, self.seed = domain, int(seed)


def config_name(height, width, num_train, num_validation, domain, seed) -> str:
    return f"{domain}_{height}x{width}_train{num_train}_val{num_validation}_seed{seed}"


class SyntheticStreets(tfds.core.GeneratorBasedBuilder):
    """Procedural street scenes with 13 Cityscapes classes (see the module docstring)."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "First release."}
    BUILDER_CONFIGS = [SyntheticStreetsConfig()]
    DEFAULT_CONFIG_NAME = BUILDER_CONFIGS[0].name
    # TFDS would locate this file through `importlib_resources` (not a dependency here) to look
    # for download checksums; there is nothing to download.
    code_path = epath.Path(os.path.abspath(__file__))

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description=__doc__.split("\n\n")[0],
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(shape=(None, None, 3)),
                    "mask": tfds.features.Image(shape=(None, None, 1)),
                    "id": tfds.features.Text(),
                    "classes": tfds.features.Tensor(shape=(NUM_CLASSES,), dtype=np.uint8),
                }
            ),
            supervised_keys=("image", "mask"),
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # nothing to download
        c = self.builder_config
        return {
            "train": self._generate_examples("train", c.num_train),
            "validation": self._generate_examples("validation", c.num_validation),
        }

    def _generate_examples(self, split, num_examples):
        c = self.builder_config
        jobs = [(split, i, c.seed, c.height, c.width, c.domain) for i in range(num_examples)]
        workers = _num_workers(num_examples)
        if workers <= 1:
            yield from map(_make_example, jobs)
            return
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            yield from pool.imap(_make_example, jobs, chunksize=16)


def builder(
    data_dir: str,
    *,
    height: int = 96,
    width: int = 192,
    num_train: int = 1000,
    num_validation: int = 200,
    domain: str = "photo",
    seed: int = 0,
) -> SyntheticStreets:
    """The builder of one parameter set; its config name encodes all of them."""
    config = SyntheticStreetsConfig(
        height=height,
        width=width,
        num_train=num_train,
        num_validation=num_validation,
        domain=domain,
        seed=seed,
    )
    if config.name in SyntheticStreets.builder_configs:  # a predefined config goes by its name
        config = config.name
    return SyntheticStreets(config=config, data_dir=os.fspath(data_dir), file_format="array_record")


def prepare(data_dir: str, **kwargs) -> SyntheticStreets:
    """`builder(data_dir, **kwargs)`, generated into `data_dir` unless it already is there.

    Read it with `prepare(...).as_data_source(split="train")[i]` -> {"image" uint8 [H, W, 3],
    "mask" uint8 [H, W, 1], "id" bytes, "classes" uint8 [NUM_CLASSES]}.
    """
    b = builder(data_dir, **kwargs)
    b.download_and_prepare(download_config=tfds.download.DownloadConfig())
    return b


def save_grid(path: str, seeds, height: int = 96, width: int = 192, domain: str = "photo") -> None:
    """Writes a preview: one row per seed, image | colourised mask."""
    rows = []
    for s in seeds:
        image, mask = render_scene(s, height, width, domain)
        rows.append(
            np.concatenate([image, np.full((height, 2, 3), 255, np.uint8), colorize(mask)], 1)
        )
    gap = np.full((2, rows[0].shape[1], 3), 255, np.uint8)
    Image.fromarray(np.concatenate([x for r in rows for x in (r, gap)][:-1], 0)).save(path)


def main(argv=None):
    p = argparse.ArgumentParser(description="Prepare the synthetic_streets data set (TFDS).")
    p.add_argument("--data_dir", required=True)
    p.add_argument("--height", type=int, default=96)
    p.add_argument("--width", type=int, default=192)
    p.add_argument("--num_train", type=int, default=1000)
    p.add_argument("--num_validation", type=int, default=200)
    p.add_argument("--domain", default="photo", choices=DOMAINS)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--grid", default="", help="also write a preview PNG of 8 training scenes here")
    a = p.parse_args(argv)
    kw = dict(
        height=a.height,
        width=a.width,
        num_train=a.num_train,
        num_validation=a.num_validation,
        domain=a.domain,
        seed=a.seed,
    )
    t = time.time()
    b = prepare(a.data_dir, **kw)
    print(f"{b.info.full_name} in {b.data_dir}: {time.time() - t:.1f} s")
    if a.grid:
        save_grid(
            a.grid,
            [example_seed(a.seed, "train", i) for i in range(8)],
            a.height,
            a.width,
            a.domain,
        )


if __name__ == "__main__":
    main()
