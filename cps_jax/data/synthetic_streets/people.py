"""Painting a person from front, back or side: contact shadow, legs and feet, skirt, arms,
torso, bag, hands, neck, head, hair or hat. Body proportions are fractions of the height."""

from cps_jax.data.palette import PERSON
from cps_jax.data.synthetic_streets.colours import rgb
from cps_jax.data.synthetic_streets.raster import Billboard

_HIP, _SHOULDER = 0.52, 0.82
_SHOE = rgb(30, 30, 30)


def paint_person(canvas, look, o):
    del look  # a person's colours are their own
    z, Hh = o["z"], o["H"]
    bb = Billboard(canvas, o["X"], z)
    px, py, k = bb.px, bb.py, bb.k
    if canvas.photo:  # contact shadow around the feet
        rx, ry = (0.25 + o["stride"] * 0.4) * Hh * k + 0.3, 0.06 * Hh * k + 0.3
        canvas.shade_ground(canvas.ellipse_mask(px, py, rx, ry), 0.7)

    def part(pts, col, tex=0.0):  # a convex part, vertices in fractions of the height
        bb.poly([(a * Hh, b * Hh) for a, b in pts], PERSON, col, tex)

    def symmetric(half0, b0, half1, b1, col, tex):
        bb.trapezoid(half0 * Hh, b0 * Hh, half1 * Hh, b1 * Hh, PERSON, col, tex)

    side = o["view"] == 2
    wd = o["width"] * (0.6 if side else 1.0)
    stride, swing = o["stride"], o["swing"]
    if not side:  # seen from the front or back, legs and arms swing towards the camera
        stride, swing = stride * 0.3, swing * 0.3
    for sgn in (-1, 1):  # legs (bottom colour), feet
        hx = sgn * 0.045 * wd
        fx = hx + sgn * stride * 0.48
        part(
            [(hx - 0.04, _HIP), (hx + 0.04, _HIP), (fx + 0.03, 0.02), (fx - 0.035, 0.02)],
            o["bottom"],
            0.05,
        )
        part([(fx - 0.04, 0.035), (fx + 0.05, 0.035), (fx + 0.05, 0.0), (fx - 0.04, 0.0)], _SHOE)
    if o["skirt"]:
        symmetric(0.09 * wd, _HIP + 0.06, 0.14 * wd, 0.32, o["bottom"], 0.05)

    def arm(sgn, sw):
        shoulder, hand = sgn * 0.12 * wd, sgn * 0.13 * wd + sw * 0.3
        sh = _SHOULDER - 0.01
        return [
            (shoulder - 0.025, sh),
            (shoulder + 0.025, sh),
            (hand + 0.02, 0.48),
            (hand - 0.025, 0.48),
        ]

    part(arm(-1, -swing), o["top"] * 0.85, 0.05)  # back arm, torso, front arm
    symmetric(0.13 * wd, _SHOULDER, 0.1 * wd, _HIP, o["top"], 0.06)
    if o["bag"]:
        ax = 0.1 * wd if side else 0.09 * wd
        bb.rect(
            (ax - 0.05) * Hh, (ax + 0.09) * Hh, 0.55 * Hh, 0.75 * Hh, PERSON, o["bag_col"], 0.05
        )
    part(arm(1, swing), o["top"] * 0.95, 0.05)
    for sgn, sw in ((-1, -swing), (1, swing)):  # hands
        a = (sgn * 0.13 * wd + sw * 0.3) * Hh
        bb.ellipse(a, 0.47 * Hh, 0.025 * Hh, 0.03 * Hh, PERSON, o["skin"], pad=0.2)
    bb.rect(-0.025 * Hh, 0.025 * Hh, _SHOULDER * Hh, 0.87 * Hh, PERSON, o["skin"] * 0.9)  # neck
    hx = 0.01 if side else 0.0
    head = (px + hx * Hh * k, py - 0.93 * Hh * k, 0.055 * Hh * k + 0.3, 0.07 * Hh * k + 0.3)
    canvas.ellipse(*head, z, PERSON, o["skin"] if o["view"] != 1 else o["hair"], 0.04)
    if o["hat"]:
        bb.rect(-0.07 * Hh, 0.07 * Hh, 0.975 * Hh, 1.0 * Hh, PERSON, o["top"] * 0.5)
    elif o["view"] != 1:  # hair on top of a face
        x, y, rx, _ = head
        canvas.ellipse(x, y - 0.035 * Hh * k, rx, 0.045 * Hh * k + 0.2, z, PERSON, o["hair"])
