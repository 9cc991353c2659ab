"""What stands in the street: lamps, trees, traffic signs and lights, cars and people.

`sample_props` places them (drawn after the layout, in one fixed order) and returns
[(z, kind, params)] far to near; `scene.PAINTERS[kind]` paints each kind.
"""

import numpy as np

from cps_jax.data.synthetic_streets import colours
from cps_jax.data.synthetic_streets.layout import SIDES
from cps_jax.data.synthetic_streets.look import jitter, pick, random_colour

# sedan, hatchback, suv, van: how often, and the ranges of their length, body and cabin height
_CAR_P = (0.45, 0.25, 0.2, 0.1)
_CAR_LENGTH = ((4.3, 5.0), (3.6, 4.2), (4.4, 5.0), (4.8, 5.6))
_CAR_BODY = ((0.55, 0.7), (0.6, 0.75), (0.75, 0.95), (0.8, 1.0))
_CAR_CABIN = ((0.45, 0.6), (0.5, 0.62), (0.6, 0.75), (0.9, 1.2))
_CAR_CABIN_SPAN = ((0.25, 0.72), (0.08, 0.7), (0.05, 0.75), (0.02, 0.82))  # along the length


def sample_props(rng, look, road, street):
    """[(z, kind, params)] of every object, sorted far to near."""
    props = []
    props += _lamps(rng, road, street)
    props += _trees(rng, look, road, street)
    props += _signs(rng, road)
    props += _traffic_lights(rng, road, street)
    props += _cars(rng, road)
    props += _people(rng, road)
    props.sort(key=lambda o: -o[0])
    return props


def _lamps(rng, road, street):
    """Rows of street lamps along the kerbs, arms over the road."""
    props = []
    for s in SIDES:
        if rng.random() < 0.75:
            spacing = rng.uniform(14, 35)
            X = road.edge(s) + s * rng.uniform(0.3, 0.7)
            h, w, arm = rng.uniform(5, 9), rng.uniform(0.12, 0.25), rng.uniform(0.5, 2.5)
            for z in np.arange(rng.uniform(2, spacing), street.end[s], spacing):
                props.append((z, "lamp", dict(X=X, z=z, h=h, w=w, arm=-s * arm)))
    return props


def _trees(rng, look, road, street):
    """Rows of similar trees on wide sidewalks; trees and bushes in parks, behind walls and
    fences and on empty lots."""
    props = []
    for s in SIDES:
        if rng.random() < 0.35 and road.sw[s] > 2.0:
            spacing = rng.uniform(6, 15)
            if road.verge[s]:
                X = road.edge(s) + s * (road.verge[s] / 2 + 0.1)
            else:
                X = road.edge(s) + s * rng.uniform(0.7, min(1.5, road.sw[s] - 0.5))
            like = _tree(rng, look)
            for z in np.arange(rng.uniform(2, spacing), street.end[s], spacing):
                props.append((z, "tree", dict(_tree(rng, look, like), X=X, z=z)))
        for seg in street.segments[s]:
            length = seg["z1"] - seg["z0"]
            if seg["type"] == "park":
                n = int(length / rng.uniform(3, 9)) + 1
            elif seg["type"] in ("wall", "fence", "lot") or (seg["barrier"] is not None):
                n = int(rng.random() < 0.5) * int(length / rng.uniform(5, 14))
            else:
                n = 0
            for _ in range(n):
                z = rng.uniform(seg["z0"], seg["z1"])
                room = _room_behind_sidewalk(road, s, seg)
                if room < 1.2:
                    continue
                X = road.outer(s) + s * rng.uniform(1.0, room)
                bush = rng.random() < 0.3
                props.append((z, "tree", dict(_tree(rng, look), X=X, z=z, bush=bush)))
    return props


def _room_behind_sidewalk(road, s, seg):
    """Metres from the sidewalk of side s to the face of the segment's building (with a margin)."""
    if seg["building"] is None:
        return 15.0
    return abs(seg["building"]["X"] - road.outer(s)) - 1


def _tree(rng, look, like=None):
    """A deciduous tree, conifer or (bush=True) bush; `like`: one of a row of similar trees."""
    t = dict(
        conifer=rng.random() < 0.15,
        trunk_h=rng.uniform(1.2, 3.5),
        trunk_w=rng.uniform(0.15, 0.45),
        R=rng.uniform(1.2, 3.5),  # crown radius
        col=jitter(rng, look.vegetation, 0.15, (0.75, 1.25)),
        bark=pick(rng, colours.BARK, 0.1),
        blobs=rng.uniform(-1, 1, (int(rng.integers(3, 8)), 4)),  # crown blobs: x, y, rx, ry
        bush=False,
    )
    if like is not None:
        for k in ("conifer", "col", "bark"):
            t[k] = like[k]
        t["R"] = like["R"] * rng.uniform(0.85, 1.15)
        t["trunk_h"] = like["trunk_h"] * rng.uniform(0.9, 1.1)
    return t


def _signs(rng, road):
    """A few traffic signs on the sidewalks."""
    props = []
    for _ in range(rng.poisson(1.5)):
        s = int(rng.choice([-1, 1]))
        z = rng.uniform(4, 60)
        sign = dict(
            X=road.edge(s) + s * rng.uniform(0.3, 0.9),
            z=z,
            h=rng.uniform(1.9, 3.0),
            size=rng.uniform(0.5, 0.9),
            shape=int(rng.integers(6)),
            back=rng.random() < 0.1,  # seen from behind
        )
        props.append((z, "sign", sign))
    return props


def _traffic_lights(rng, road, street):
    """Traffic lights before most cross streets, and sometimes one elsewhere."""
    props = []
    for s in SIDES:
        for seg in street.segments[s]:
            if seg["type"] == "street" and rng.random() < 0.8:
                z = max(3.0, seg["z0"] - rng.uniform(0.3, 3))
                props.append(
                    (z, "light", _traffic_light(rng, road, s, z, 0.4, colours.LIGHT_HOUSINGS))
                )
    for _ in range(int(rng.random() < 0.35)):
        s = int(rng.choice([-1, 1]))
        z = rng.uniform(8, 50)
        housings = colours.LIGHT_HOUSINGS[:3]
        props.append((z, "light", _traffic_light(rng, road, s, z, 0.6, housings)))
    return props


def _traffic_light(rng, road, s, z, p_over, housings):
    """A traffic light on side s at depth z, with a second one over the road (probability
    p_over) on an arm of length `over` (0: none)."""
    # the keyword arguments are evaluated, so drawn, in the order written
    return dict(
        X=road.edge(s) + s * rng.uniform(0.3, 0.8),
        z=z,
        h=rng.uniform(2.6, 4.2),
        state=int(rng.integers(3)),  # red, amber, green
        over=rng.uniform(2, 7) if rng.random() < p_over else 0.0,
        s=s,
        housing=pick(rng, housings, 0.05),
    )


def _cars(rng, road):
    """Moving traffic in the lanes (oncoming cars face the camera), parked cars along the kerbs."""
    props = []
    density = rng.uniform(0.15, 0.8)
    parked = {s: rng.random() < 0.5 for s in SIDES}
    for k in range(road.n_lanes):
        oncoming = road.two_way and k < road.n_lanes // 2
        Xk = road.XL + (k + 0.5) * road.lane_w
        z = rng.uniform(3, 12)
        while z < 110:
            car = _car(rng)
            if rng.random() < density:
                if k == 0 and parked[-1] or k == road.n_lanes - 1 and parked[1]:
                    s = -1 if k == 0 else 1
                    X = road.edge(s) - s * (car["w"] / 2 + rng.uniform(0.1, 0.4))
                    car["front"] = False if not road.two_way else oncoming and rng.random() < 0.5
                else:
                    X = Xk + rng.uniform(-0.4, 0.4)
                    car["front"] = oncoming
                if abs(X) > 0.3 + car["w"] / 2 or z > 6:  # not on the camera
                    props.append((z, "car", dict(car, X=X, z=z)))
            z += car["L"] + rng.uniform(1, 20) / max(density, 0.2)
    return props


def _one_of(rng, ranges, kind):
    """rng.uniform over ranges[kind], drawing for every kind (the stream does not depend on it)."""
    return [rng.uniform(lo, hi) for lo, hi in ranges][kind]


def _car(rng):
    """A car: kind, width w, length L, body height hb, cabin height hcab and span, colours."""
    kind = int(rng.choice(4, p=list(_CAR_P)))
    w = rng.uniform(1.6, 1.85) if kind < 2 else rng.uniform(1.8, 2.0)
    L = _one_of(rng, _CAR_LENGTH, kind)
    hb = _one_of(rng, _CAR_BODY, kind)
    hcab = _one_of(rng, _CAR_CABIN, kind)
    col = random_colour(rng) if rng.random() < 0.3 else pick(rng, colours.CARS, 0.06, (0.85, 1.1))
    glass = pick(rng, colours.WINDOWS, 0.1, (0.6, 1.0))
    cab = _CAR_CABIN_SPAN[kind]
    return dict(kind=kind, w=w, L=L, hb=hb, hcab=hcab, col=col, cab=cab, glass=glass, front=False)


def _people(rng, road):
    """People on the sidewalks and on the zebra crossing."""
    props = []
    for _ in range(rng.poisson(rng.uniform(0.5, 10))):
        s = int(rng.choice([-1, 1]))
        X = road.edge(s) + s * rng.uniform(0.3, max(0.4, road.sw[s] - 0.3))
        z = rng.uniform(3, 50)
        props.append((z, "person", dict(_person(rng), X=X, z=z)))
    if road.zebra is not None:
        for _ in range(rng.poisson(1.5)):
            z = road.zebra + rng.uniform(0.5, 3)
            X = rng.uniform(road.XL, road.XR)
            props.append((z, "person", dict(_person(rng), X=X, z=z)))
    return props


def _person(rng):
    """A person: height H, view, stride, arm swing, width and clothes."""
    child = rng.random() < 0.12
    return dict(
        H=rng.uniform(1.0, 1.4) if child else rng.uniform(1.55, 1.95),
        view=int(rng.integers(3)),  # front, back, side
        stride=rng.uniform(0.0, 0.45),
        swing=rng.uniform(-0.4, 0.4),
        width=rng.uniform(0.9, 1.2),
        skin=pick(rng, colours.SKIN, 0.04),
        hair=pick(rng, colours.HAIR, 0.05),
        top=random_colour(rng),
        bottom=(pick(rng, colours.TROUSERS, 0.08) if rng.random() < 0.7 else random_colour(rng)),
        skirt=rng.random() < 0.15,
        bag=rng.random() < 0.25,
        bag_col=random_colour(rng),
        hat=rng.random() < 0.1,
    )
