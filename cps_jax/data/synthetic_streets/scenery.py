"""Painting the backdrop of a street: sky, skyline, building facades, walls, fences and hedges."""

import numpy as np

from cps_jax.data.palette import BUILDING, VEGETATION
from cps_jax.data.synthetic_streets.colours import rgb
from cps_jax.data.synthetic_streets.filters import lattice_hash
from cps_jax.data.synthetic_streets.raster import Billboard


def paint_sky(canvas, look):
    """Horizon-to-zenith gradient, with clouds in the photo domain (no depth: all else is nearer)."""
    cy = canvas.camera.cy
    t = np.clip((cy - canvas.ys) / max(cy, 1.0), 0, 1)[:, None, None] ** 0.6
    col = look.sky_horizon * (1 - t) + look.sky_zenith * t
    if canvas.photo:
        n = canvas.noise
        c = np.clip((0.7 * n.coarse + 0.3 * n.med - 0.5 + look.clouds) * 1.5, 0, 1)
        c = (c * np.clip(t[..., 0] * 3, 0, 1))[..., None]
        cloud = np.clip(look.sky_horizon * 1.1 + 0.1, 0, 1)
        col = col * (1 - c) + cloud * (c * (0.85 + 0.15 * n.med[..., None]))
    canvas.img[:] = col


def paint_skyline(canvas, street):
    z = street.skyline_z
    bb = Billboard(canvas, 0.0, z)
    for it in street.skyline:
        if it["kind"] == "tree":
            w = it["x1"] - it["x0"]
            h = min(it["h"], w * 0.8)
            x, y = bb.at(it["x0"] + w / 2, h / 2)
            rx, ry = w / 2 * bb.k, h / 2 * bb.k + 0.5
            canvas.ellipse(x, y, rx, ry, z, VEGETATION, it["col"], 0.15, "leaf")
        else:
            bb.rect(it["x0"], it["x1"], -1.0, it["h"], BUILDING, it["col"], 0.04)


def face_shade(canvas, look, s):
    """Brightness of a face parallel to the road on side s: lit or in shadow."""
    if not canvas.photo:
        return 0.85 if s < 0 else 1.0
    if s == -look.sun_side:
        return 1.05 if look.sunny else 1.0
    return look.shadow if look.sunny else 0.9


def paint_building(canvas, look, b, z0, z1):
    """The face of building `b` along the street over depths [z0, z1], and its front face at z0."""
    s = b["s"]
    plane = canvas.side_plane(b["X"], z0, z1, 0.0, b["h"])
    if plane is not None:
        box, Z, V, m = plane
        col = _facade(canvas, look, b, box, Z, V, Z, face_shade(canvas, look, s))
        canvas.paint(box, m, Z, BUILDING, col)
    if z0 > 0.6:  # a building that starts at the camera shows no front face
        face = canvas.front_face(b["X"], b["X"] + s * b["depth"], 0.0, b["h"], z0)
        if face is not None:
            box, U, V = face
            shade = look.front_shade if canvas.photo else 0.75
            canvas.paint(
                box, None, z0, BUILDING, _facade(canvas, look, b, box, U * s, V, z0, shade)
            )


def _facade(canvas, look, b, box, U, V, depth, shade):
    """Colours [h, w, 3] of a building face at world coordinates U (along it) and V (height)."""
    r0, r1, c0, c1 = box
    shape = (r1 - r0, c1 - c0)
    U = np.broadcast_to(U, shape)
    V = np.broadcast_to(V, shape)
    iu = np.floor((U - b["wo"]) / b["ws"])  # window bay
    jv = np.floor((V - b["gf"]) / b["fh"])  # floor
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
    awning = (V >= b["gf"] - 0.7) & (V < b["gf"] - 0.3)
    if not canvas.photo:
        col = np.empty(shape + (3,), np.float32)
        col[:] = b["col"]
        col[win] = b["win"]
        if shop is not None:
            col[shop] = b["win"] * 0.8
            col[awning] = b["shop_col"]
        return col * shade
    col = b["col"] * (1 + _material(canvas, b, box, U, V, depth / canvas.camera.f))[..., None]
    if b["cornice"]:
        ledge = (V > b["h"] - 0.5) | ((V > b["gf"] - 0.25) & (V < b["gf"]))
        col = np.where(ledge[..., None], b["frame"] * 0.9, col)
    hv = lattice_hash(iu, jv, b["salt"])[..., None]  # per window
    sky_v = np.clip(V / (b["h"] + 1), 0, 1)[..., None]  # upper windows reflect the sky
    wcol = b["win"] * (0.6 + 0.7 * hv) * (1 - 0.4 * sky_v) + look.sky_horizon * 0.45 * sky_v
    if b["lit"] > 0:
        wcol = np.where(hv > 1 - b["lit"], rgb(255, 220, 140), wcol)
    if b["style"] == "glass":
        wcol = wcol * 0.6 + look.sky_zenith * 0.25 + 0.15 * b["col"]
    else:  # a frame around each window
        rim = (
            upper
            & (fu < b["wfw"] + 0.08)
            & (fv > b["wb0"] - 0.04)
            & (fv < b["wb0"] + b["wfh"] + 0.04)
        )
        col = np.where((rim & ~win)[..., None], b["frame"], col)
    col = np.where(win[..., None], wcol, col)
    if shop is not None:
        scol = b["win"] * 0.7 + 0.15 * look.sky_horizon
        med = canvas.noise_at("med", box)
        col = np.where(shop[..., None], scol * (1 + 0.2 * med)[..., None], col)
        col = np.where(awning[..., None], b["shop_col"], col)
    return col * shade


def _material(canvas, b, box, U, V, fp):
    """Relative brightness [h, w] of the facade material (bricks, panels, plaster, stains);
    `fp` metres per pixel: detail finer than a pixel fades out."""
    fine, med = canvas.noise_at("fine", box), canvas.noise_at("med", box)
    t = 0.05 * fine + b["stain"] * 0.5 * canvas.noise_at("coarse", box)
    style = b["style"]
    if style == "brick":
        bh = b["brick"]
        row = np.floor(V / bh)
        bu = U / (2.2 * bh) + 0.5 * (row % 2)
        mortar = ((V / bh - row) < 0.15) | ((bu - np.floor(bu)) < 0.08)
        amp = np.clip(bh / fp - 1.5, 0, 1)
        t = t + amp * (0.12 * (lattice_hash(row, np.floor(bu), b["salt"]) - 0.5) - 0.2 * mortar)
    elif style in ("concrete", "dark"):
        pu, pv = (U / b["panel"]) % 1.0, (V / (b["panel"] * 0.8)) % 1.0
        amp = np.clip(0.4 / fp - 0.5, 0, 1)
        t = t - 0.15 * amp * ((pu < 0.03) | (pv < 0.04)) + 0.08 * med
    elif style == "plaster":
        t = t + 0.08 * med - 0.15 * np.clip(1 - V / 2.5, 0, 1)
    return t


def paint_barrier(canvas, look, w, z0, z1):
    """Wall, fence or hedge `w` along the sidewalk over depths [z0, z1]."""
    top = w["h"] + (w["wob"] if w["kind"] == "hedge" else 0)
    plane = canvas.side_plane(w["X"], z0, z1, 0.0, top)
    if plane is None:
        return
    box, Z, V, m = plane
    U = np.broadcast_to(Z, V.shape)
    if w["kind"] == "hedge":
        m = m & (V <= w["h"] + w["wob"] * np.sin(U * w["freq"] * 3 + w["salt"] % 7))
    col = np.empty(V.shape + (3,), np.float32)
    col[:] = w["col"]
    if w["kind"] == "fence":
        col = _fence(canvas, w, col, U, V, Z)
    elif w["kind"] == "wall":
        col = _wall(canvas, w, col, box, U, V)
    else:
        col = canvas.texture(box, col, 0.35, "leaf")
    shade = face_shade(canvas, look, int(np.sign(w["X"])))
    canvas.paint(box, m, Z, w["cls"], col * shade)


def _fence(canvas, w, col, U, V, Z):
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
    if not canvas.photo:
        col[dark] *= 0.6
        return col
    # fine periodic structure averages out with distance
    f = canvas.camera.f
    a = np.clip(w["period"] * f / Z / 2 - 0.5, 0, 1) if w["pattern"] < 2 else 1.0
    return col * (1 - 0.55 * a * dark)[..., None]


def _wall(canvas, w, col, box, U, V):
    if w["pattern"] == 1:  # horizontal courses / blocks
        col[((V / w["period"]) % 1.0) < 0.1] *= 0.8
    elif w["pattern"] == 2:  # vertical panels
        col[((U / w["period"]) % 1.0) < 0.06] *= 0.75
    col[V > w["h"] - 0.12] *= 1.15  # coping
    if not canvas.photo:
        return col
    fine, med = canvas.noise_at("fine", box), canvas.noise_at("med", box)
    col = col * (1 + 0.08 * fine + 0.1 * med)[..., None]
    if w["graffiti"]:
        g = (canvas.noise_at("coarse", box) > 0.35) & (V < 1.8)
        col = np.where(g[..., None], w["gcol"], col)
    return col
