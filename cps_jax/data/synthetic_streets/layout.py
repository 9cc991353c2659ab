"""The layout of a street: the road, and what lines it on either side.

Sides are s = -1 (left) and s = 1 (right). Along each side a row of segments (buildings, walls,
fences, parks, empty lots and cross streets) runs from the camera to a random end; behind it
stands a back row of taller buildings, and across the far end of the street a skyline.
Everything is drawn from one random stream in a fixed order (the mask depends on nothing else).
"""

import dataclasses

import numpy as np

from cps_jax.data.palette import FENCE, ROAD, SIDEWALK, TERRAIN, VEGETATION, WALL
from cps_jax.data.synthetic_streets import colours
from cps_jax.data.synthetic_streets.look import jitter, pick, random_colour

SIDES = (-1, 1)
SEGMENT_TYPES = ("building", "wall", "fence", "park", "lot", "street")
_SEGMENT_P = (0.55, 0.08, 0.08, 0.12, 0.05, 0.12)  # before a per-side jitter
_BARRIER_CLASS = {"wall": WALL, "fence": FENCE, "hedge": VEGETATION}
_BARRIER_HEIGHT = {"wall": (0.8, 3.2), "fence": (0.9, 2.2), "hedge": (0.7, 1.8)}


@dataclasses.dataclass(frozen=True)
class Road:
    n_lanes: int
    lane_w: float
    two_way: bool  # the left half of the lanes is oncoming traffic
    XL: float  # lateral position of the left kerb (the camera is at X = 0)
    XR: float  # of the right kerb
    sw: dict  # sidewalk width per side
    verge: dict  # width of a grass verge along the kerb per side (0: none)
    dash_period: float
    dash_duty: float
    centre_double: bool
    edge_lines: bool
    zebra: float | None  # depth of a zebra crossing

    def edge(self, s):
        """The kerb of side s."""
        return self.XL if s < 0 else self.XR

    def outer(self, s):
        """The outer edge of the sidewalk of side s."""
        return self.edge(s) + s * self.sw[s]

    def centre_zone(self, X):
        """Where the centre line of a two-way road is painted (in its own colour)."""
        if not self.two_way:
            return np.zeros(X.shape, bool)
        xc = self.XL + (self.n_lanes // 2) * self.lane_w
        return np.abs(X - xc) < 0.5


def sample_road(rng):
    """Lanes (the camera in one of them), sidewalks, verges and markings."""
    n = int(rng.choice([2, 2, 3, 4, 4, 5, 6]))
    lw = rng.uniform(2.7, 3.6)
    two_way = rng.random() < 0.75
    ego = int(rng.integers(n // 2 if two_way else 0, n))  # drive in a lane of our direction
    XL = -(ego + 0.5) * lw + rng.uniform(-0.4, 0.4)
    sw = {-1: rng.uniform(1.5, 5.0), 1: rng.uniform(1.5, 5.0)}
    # the keyword arguments are evaluated, so drawn, in the order written
    return Road(
        n_lanes=n,
        lane_w=lw,
        two_way=two_way,
        XL=XL,
        XR=XL + n * lw,
        sw=sw,
        # a grass verge between kerb and footway on some streets
        verge={s: rng.uniform(0.6, 0.5 * sw[s]) if rng.random() < 0.3 else 0.0 for s in SIDES},
        dash_period=rng.uniform(6, 12),
        dash_duty=rng.uniform(0.3, 0.6),
        centre_double=rng.random() < 0.5,
        edge_lines=rng.random() < 0.5,
        zebra=rng.uniform(6, 35) if rng.random() < 0.35 else None,
    )


@dataclasses.dataclass(frozen=True)
class Street:
    segments: dict  # per side: [segment], near to far (see _segments)
    back: dict  # per side: [building] of the back row, each with its depth range z0, z1
    end: dict  # per side: depth where its segments end
    skyline_z: float  # depth of the skyline
    skyline: list  # [{kind: "tree" | "building", x0, x1, h, col}]


def sample_street(rng, camera, look, road, height, width):
    """Both sides of the street and the skyline (which fills the image of height x width)."""
    segments, back, end = {}, {}, {}
    for s in SIDES:
        z_end = rng.uniform(45, 140)
        segments[s] = _segments(rng, look, road, s, z_end)
        end[s] = segments[s][-1]["z1"]
        back[s] = _back_row(rng, look, road, s, z_end, segments[s])
    skyline_z = max(end.values()) + rng.uniform(10, 60)
    skyline = _skyline(rng, camera, look, road, height, width, skyline_z)
    return Street(segments=segments, back=back, end=end, skyline_z=skyline_z, skyline=skyline)


def _segments(rng, look, road, s, z_end):
    """Segments {type, z0, z1, ground class, building or None, barrier or None} of side s."""
    p = np.array(_SEGMENT_P) * rng.uniform(0.3, 1.7, len(_SEGMENT_P))
    p /= p.sum()
    segs, z = [], 0.5
    out = road.outer(s)
    while z < z_end:
        typ = SEGMENT_TYPES[rng.choice(len(SEGMENT_TYPES), p=p)]
        if typ == "street" and (z < 7 or segs[-1]["type"] == "street"):
            typ = "building"  # no cross street at the camera, nor two in a row
        length = rng.uniform(7, 14) if typ == "street" else rng.uniform(6, 35)
        ground = SIDEWALK if rng.random() < 0.5 else TERRAIN
        seg = dict(type=typ, z0=z, z1=z + length, building=None, barrier=None, ground=ground)
        if typ == "street":
            seg["ground"] = ROAD
        elif typ == "building":
            setback = 0.0 if rng.random() < 0.55 else rng.uniform(0.5, 6.0)
            seg["building"] = _building(rng, look, out + s * setback, s)
            if setback < 1.5:
                seg["ground"] = SIDEWALK
            elif rng.random() < 0.55:  # a front garden behind a wall, fence or hedge
                kind = ("wall", "fence", "hedge")[rng.integers(3)]
                seg["barrier"] = _barrier(rng, look, kind, out)
        elif typ in ("wall", "fence"):
            seg["barrier"] = _barrier(rng, look, typ, out)
            if rng.random() < 0.5:
                seg["building"] = _building(rng, look, out + s * rng.uniform(3, 12), s)
        elif typ == "park":
            seg["ground"] = TERRAIN
            if rng.random() < 0.3:
                seg["barrier"] = _barrier(rng, look, "hedge", out)
        segs.append(seg)
        z += length
    return segs


def _back_row(rng, look, road, s, z_end, segments):
    """Taller buildings behind side s, seen above and between the front row (not across the
    cross streets)."""
    streets = [(g["z0"] - 1.0, g["z1"] + 1.0) for g in segments if g["type"] == "street"]
    back, z = [], 0.5
    Xb = road.outer(s) + s * rng.uniform(16, 40)
    while z < z_end + 20:
        length = rng.uniform(12, 45)
        b = _building(rng, look, Xb + s * rng.uniform(0, 4), s, 8.0, 40.0)
        b["z0"], b["z1"] = z, z + length
        if not any(b["z1"] > a0 and b["z0"] < a1 for a0, a1 in streets):
            back.append(b)
        z += length
    return back


def _skyline(rng, camera, look, road, height, width, z):
    """Distant buildings and trees across the end of the street at depth z, outside the street."""
    hmax = camera.hc + (camera.cy - 0.1 * height) * z / camera.f  # to near the top of the image
    lo, hi = road.outer(-1) - rng.uniform(0, 6), road.outer(1) + rng.uniform(0, 6)
    half = (width * 0.7) * z / camera.f
    skyline, x = [], -half
    while x < half:
        w = rng.uniform(6, 30)
        kind = "tree" if rng.random() < 0.3 else "building"
        h = rng.uniform(0.2, 1.0) * min(max(hmax, 3.0), 60.0)
        if kind == "tree":
            col = jitter(rng, look.vegetation, 0.1)
        else:
            col = pick(rng, colours.BUILDINGS[colours.STYLES[rng.integers(len(colours.STYLES))]])
        if x + w < lo or x > hi:
            skyline.append(dict(kind=kind, x0=x, x1=x + w, h=h, col=col))
        x += w * rng.uniform(0.7, 1.1)
    return skyline


def _building(rng, look, X, s, hmin=4.0, hmax=30.0):
    """A building whose street face stands at lateral X on side s.

    Keys: style (colours.STYLES), col, h height, depth; fh floor height, gf ground floor height;
    windows every ws metres from offset wo, wfw and wfh their width and height as fractions of
    the bay, wb0 their sill (fraction of the floor), win their colour, lit the fraction lit;
    frame, a shop front every shop_w metres (if shop) in shop_col, brick height, panel size,
    stain amount, cornice, and the salt of its per-window and per-brick hash.
    """
    style = colours.STYLES[rng.choice(len(colours.STYLES), p=look.style_p)]
    col = pick(rng, colours.BUILDINGS[style], 0.08, (0.8, 1.2))
    if style == "glass":  # towers
        hmin, hmax = max(hmin, 12.0), hmax * 1.5
    fh = rng.uniform(2.8, 3.8)
    # the keyword arguments are evaluated, so drawn, in the order written
    return dict(
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
        win=pick(rng, colours.WINDOWS, 0.1),
        lit=rng.uniform(0, 0.3) ** 2,
        frame=pick(rng, colours.WINDOW_FRAMES, 0.05),
        shop=rng.random() < 0.5,
        shop_col=random_colour(rng),
        shop_w=rng.uniform(3, 8),
        mortar=np.clip(col * rng.uniform(0.6, 1.5), 0, 1),  # unused, but part of the stream
        brick=rng.uniform(0.18, 0.35),
        panel=rng.uniform(1.2, 3.5),
        stain=rng.uniform(0.0, 0.25),
        cornice=rng.random() < 0.5,
        salt=int(rng.integers(1, 2**31)),
    )


def _barrier(rng, look, kind, X):
    """A wall, fence or hedge at lateral X along the outer edge of a sidewalk.

    Walls have a pattern (plain, courses, panels, plain) of `period` and maybe graffiti in gcol;
    fences a pattern (planks, bars, rails and posts every `post` metres) of `period`; hedges a
    top that wobbles by `wob` at frequency `freq`.
    """
    h = rng.uniform(*_BARRIER_HEIGHT[kind])
    if kind == "wall":
        col = pick(rng, colours.WALLS, 0.08)
        pattern = int(rng.integers(4))
        graffiti = rng.random() < 0.3
        gcol = random_colour(rng, (0.5, 1.0), (0.4, 1.0))
        details = dict(pattern=pattern, graffiti=graffiti, gcol=gcol, period=rng.uniform(0.3, 3))
    elif kind == "fence":
        col = pick(rng, colours.FENCES, 0.1)
        pattern = int(rng.integers(3))
        details = dict(pattern=pattern, period=rng.uniform(0.1, 0.5), post=rng.uniform(1.5, 3.5))
    else:
        col = jitter(rng, look.vegetation, 0.1)
        details = dict(wob=rng.uniform(0.05, 0.25), freq=rng.uniform(0.5, 2.0))
    salt = int(rng.integers(1, 2**31))
    return dict(kind=kind, cls=_BARRIER_CLASS[kind], X=X, h=h, col=col, salt=salt, **details)
