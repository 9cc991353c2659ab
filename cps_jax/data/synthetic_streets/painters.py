"""Painting the objects that `props.sample_props` places: each is drawn on a billboard facing
the camera at its depth (cars also get the side face the camera sees)."""

import numpy as np

from cps_jax.data.palette import POLE, TRAFFIC_LIGHT, TRAFFIC_SIGN, VEGETATION
from cps_jax.data.synthetic_streets.colours import rgb
from cps_jax.data.synthetic_streets.raster import Billboard

_SIGN_RED, _SIGN_WHITE, _SIGN_BLUE = rgb(200, 30, 30), rgb(235, 235, 230), rgb(30, 70, 160)
_LAMP_COLOURS = (rgb(255, 40, 30), rgb(255, 190, 20), rgb(40, 255, 120))  # red, amber, green


def paint_lamp(canvas, look, o):
    bb = Billboard(canvas, o["X"], o["z"])
    h, w, arm, col = o["h"], o["w"], o["arm"], look.pole
    bb.rect(-w / 2, w / 2, 0, h, POLE, col, 0.05)
    bb.rect(min(0, arm), max(0, arm), h - 0.12, h, POLE, col)
    bb.rect(arm - 0.3, arm + 0.3, h - 0.3, h + 0.05, POLE, col * 0.8)  # the head
    bb.rect(arm - 0.2, arm + 0.2, h - 0.3, h - 0.22, POLE, rgb(250, 245, 220))  # its light


def paint_sign(canvas, look, o):
    """A sign on a pole: disc, triangle, stop octagon or information panel (or its grey back)."""
    bb = Billboard(canvas, o["X"], o["z"])
    px, k, z, h, r = bb.px, bb.k, o["z"], o["h"], o["size"] / 2
    bb.rect(-0.04, 0.04, 0, h + r, POLE, look.pole * 0.9, 0.05)
    cy = bb.py - (h + r) * k  # the sign's centre row
    if o["back"]:
        bb.rect(-r, r, h, h + 2 * r, TRAFFIC_SIGN, rgb(150, 150, 150), 0.05)
        return
    shape = o["shape"]
    if shape in (0, 1):  # prohibition / mandatory discs
        bb.ellipse(0.0, h + r, r, r, TRAFFIC_SIGN, _SIGN_RED if shape == 0 else _SIGN_BLUE, 0.03)
        if shape == 0:
            bb.ellipse(0.0, h + r, 0.75 * r, 0.75 * r, TRAFFIC_SIGN, _SIGN_WHITE, 0.03)
        else:
            bb.rect(-0.5 * r, 0.5 * r, h + 0.9 * r, h + 1.1 * r, TRAFFIC_SIGN, _SIGN_WHITE)
    elif shape in (2, 3):  # warning / give way triangles
        d = 1 if shape == 2 else -1

        def triangle(q):
            y0 = cy + d * 0.6 * q * k
            return [(px - q * k, y0), (px + q * k, y0), (px, cy - d * 1.1 * q * k)]

        canvas.poly(triangle(r * 1.05), z, TRAFFIC_SIGN, _SIGN_RED)
        inner = _SIGN_WHITE if shape == 3 else rgb(245, 210, 60)
        canvas.poly(triangle(r * 0.7), z, TRAFFIC_SIGN, inner)
    elif shape == 4:  # stop octagon
        a = np.arange(8) * np.pi / 4 + np.pi / 8
        octagon = np.stack([px + r * k * np.cos(a), cy + r * k * np.sin(a)], 1)
        canvas.poly(octagon, z, TRAFFIC_SIGN, _SIGN_RED)
        bb.rect(-0.6 * r, 0.6 * r, h + 0.85 * r, h + 1.15 * r, TRAFFIC_SIGN, _SIGN_WHITE)
    else:  # information rectangle
        c = [_SIGN_BLUE, rgb(20, 110, 60), _SIGN_WHITE][int(z * 7) % 3]
        bb.rect(-1.2 * r, 1.2 * r, h + 0.2 * r, h + 1.8 * r, TRAFFIC_SIGN, _SIGN_WHITE)
        bb.rect(-1.1 * r, 1.1 * r, h + 0.3 * r, h + 1.7 * r, TRAFFIC_SIGN, c, 0.03)


def paint_light(canvas, look, o):
    """A traffic light on a pole, and maybe a second one over the road on an arm."""
    h, bb = o["h"], Billboard(canvas, o["X"], o["z"])
    bb.rect(-0.07, 0.07, 0, h + (1.5 if o["over"] else 0), POLE, look.pole, 0.05)
    heads = [(0.0, h)]
    if o["over"]:
        a = -o["s"] * o["over"]
        bb.rect(min(0, a), max(0, a), h + 1.4, h + 1.55, POLE, look.pole)
        heads.append((a, h + 0.4))
    for a, b in heads:
        bb.rect(a - 0.17, a + 0.17, b, b + 0.95, TRAFFIC_LIGHT, o["housing"], 0.05)
        for i, lamp in enumerate(_LAMP_COLOURS):
            c = lamp if i == o["state"] else lamp * 0.25 + 0.05
            bb.ellipse(a, b + 0.78 - 0.3 * i, 0.11, 0.11, TRAFFIC_LIGHT, c)


def paint_tree(canvas, look, o):
    """A bush, a conifer or a deciduous tree."""
    bb = Billboard(canvas, o["X"], o["z"])
    if o["bush"]:
        _bush(bb, o)
    elif o["conifer"]:
        _conifer(bb, o)
    else:
        _deciduous(bb, o)


def _bush(bb, o):
    R = o["R"] * 0.5
    for bx, by, rx, ry in o["blobs"]:
        a, b = bx * R * 0.6, R * 0.55 + by * 0.2 * R
        ra, rb = R * (0.7 + 0.2 * rx), R * (0.5 + 0.15 * ry)
        bb.ellipse(a, b, ra, rb, VEGETATION, o["col"] * (0.9 + 0.1 * ry), 0.4, "leaf", pad=0.3)


def _trunk(bb, o, top):
    bb.rect(-o["trunk_w"] / 2, o["trunk_w"] / 2, 0, top, VEGETATION, o["bark"], 0.1)


def _conifer(bb, o):
    """A trunk under three stacked triangles."""
    R, th = o["R"], o["trunk_h"]
    _trunk(bb, o, th)
    top = th + 3.2 * R
    for i in range(3):
        b0, b1 = th + i * R * 0.9, top - (2 - i) * 0.2 * R
        wd = R * (1 - 0.25 * i)
        bb.poly([(-wd, b0), (wd, b0), (0.0, b1)], VEGETATION, o["col"] * (0.8 + 0.1 * i), 0.3)


def _deciduous(bb, o):
    """A trunk up into a crown of blobs, the upper ones lit."""
    R, blobs = o["R"], o["blobs"]
    crown = o["trunk_h"] + R * 0.8  # height of the crown's centre
    _trunk(bb, o, crown)
    for i, (bx, by, rx, ry) in enumerate(blobs):
        shade = 0.75 + 0.1 * i / len(blobs) + 0.15 * (by > 0)
        a, b = bx * 0.55 * R, crown + by * 0.45 * R
        ra, rb = R * (0.65 + 0.15 * rx), R * (0.6 + 0.15 * ry)
        bb.ellipse(a, b, ra, rb, VEGETATION, o["col"] * shade, 0.45, "leaf", pad=0.3)
