"""Painting a car: its shadow on the ground, the side face the camera sees and the rear (or,
for oncoming traffic, front) face."""

import numpy as np

from cps_jax.data.palette import CAR
from cps_jax.data.synthetic_streets.colours import rgb
from cps_jax.data.synthetic_streets.raster import Billboard

_CLEARANCE = 0.28  # ground to the bottom of the body, metres
_TYRE = rgb(25, 25, 28)


def paint_car(canvas, look, o):
    if canvas.photo:
        _shadow(canvas, look, o)
    _side(canvas, o)
    _back(canvas, o)


def _shadow(canvas, look, o):
    """Shadow and ambient occlusion on the ground under the car, cast away from the sun."""
    X, z, w = o["X"], o["z"], o["w"]
    off = -look.sun_side * min(look.sun_k, 1.2) * 0.6 if look.sunny else 0.0
    a0, a1 = X - w / 2 - 0.1 + min(off, 0), X + w / 2 + 0.1 + max(off, 0)
    z0, z1 = max(z - 0.15, 0.5), z + o["L"]
    g = canvas.camera.ground_point
    outline = canvas.poly_mask([g(a0, z0), g(a1, z0), g(a1, z1), g(a0, z1)])
    canvas.shade_ground(outline, look.shadow * 0.9 if look.sunny else 0.55)


def _side(canvas, o):
    """The side towards the camera's axis: body, cabin with windows, wheels."""
    z, X, L, hb, hcab = o["z"], o["X"], o["L"], o["hb"], o["hcab"]
    vb = _CLEARANCE + hb
    sgn = 1 if X > 0 else -1
    Xs = X - sgn * o["w"] / 2
    if Xs * sgn <= 0.05:  # straight ahead: no side visible
        return
    plane = canvas.side_plane(Xs, z, z + L, 0.0, vb + hcab)
    if plane is None:
        return
    box, Z, V, m = plane
    u = (z + L) - Z if o["front"] else Z - z  # distance from the car's rear
    u = np.broadcast_to(u, V.shape)
    a0, a1 = o["cab"][0] * L, o["cab"][1] * L
    body = (V >= _CLEARANCE) & (V <= vb)
    cv = V - vb  # height above the body
    cab = (cv > 0) & (cv <= hcab) & (u >= a0 + cv * 0.5) & (u <= a1 - cv * 0.9)
    wheel = _wheel(u - 0.75, V) | _wheel(u - (L - 0.85), V)
    win = (
        (cv > 0.06)
        & (cv <= hcab - 0.05)
        & (u >= a0 + cv * 0.5 + 0.12)
        & (u <= a1 - cv * 0.9 - 0.12)
    )
    c = np.empty(V.shape + (3,), np.float32)
    c[:] = o["col"] * (0.8 if canvas.photo else 0.85)
    if canvas.photo:
        c *= (0.85 + 0.3 * np.clip((V - _CLEARANCE) / hb, 0, 1))[..., None]
    c[win] = o["glass"]
    c[wheel] = _TYRE
    canvas.paint(box, (body | cab | wheel) & m, Z, CAR, canvas.texture(box, c, 0.03))


def _wheel(du, V):
    """Inside a wheel of radius 0.33 m whose centre is du metres away along the car."""
    return (du / 0.33) ** 2 + ((V - 0.33) / 0.33) ** 2 <= 1


def _back(canvas, o):
    """Rear or front face: tyres, body with a reflection gradient, bumper, cabin, window,
    lights and number plate."""
    z, hw, hcab, col = o["z"], o["w"] / 2, o["hcab"], o["col"]
    clear, vb = _CLEARANCE, _CLEARANCE + o["hb"]
    bb = Billboard(canvas, o["X"], z)
    bb.rect(-hw + 0.08, -hw + 0.33, 0.0, 0.45, CAR, _TYRE)
    bb.rect(hw - 0.33, hw - 0.08, 0.0, 0.45, CAR, _TYRE)
    box = bb.rect(-hw, hw, clear, vb, CAR, col * (1.0 if canvas.photo else 0.95), 0.03)
    if box is not None and canvas.photo:
        _reflection(canvas, box, z)
    bb.rect(-hw, hw, clear, clear + 0.12, CAR, _TYRE * 2)  # bumper
    inset = 0.08 if o["kind"] == 3 else 0.18  # vans are boxy
    bb.trapezoid(hw - 0.06, vb, hw - inset - 0.08, vb + hcab, CAR, col * 0.95)
    bb.trapezoid(hw - 0.14, vb + 0.06, hw - inset - 0.14, vb + hcab - 0.07, CAR, o["glass"])
    lights = rgb(245, 240, 215) if o["front"] else rgb(200, 20, 20)
    for a in (-hw + 0.05, hw - 0.3):
        bb.rect(a, a + 0.25, vb - 0.22, vb - 0.07, CAR, lights)
    bb.rect(-0.25, 0.25, clear + 0.15, clear + 0.27, CAR, rgb(230, 230, 225))


def _reflection(canvas, box, z):
    """Brightens the body towards its top where it was just painted (depth z)."""
    r0, r1, c0, c1 = box
    g = np.linspace(0.8, 1.15, r1 - r0, dtype=np.float32)[::-1][:, None, None]
    sel = (canvas.mask[r0:r1, c0:c1] == CAR) & (canvas.depth[r0:r1, c0:c1] == z)
    img = canvas.img[r0:r1, c0:c1]
    canvas.img[r0:r1, c0:c1] = np.where(sel[..., None], img * g, img)
