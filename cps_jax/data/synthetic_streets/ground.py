"""Painting the ground below the horizon: road, kerbs, sidewalks, verges, cross streets and
terrain, road markings, and the shadows of buildings and walls on the sunny side."""

import numpy as np

from cps_jax.data.palette import ROAD, SIDEWALK, TERRAIN
from cps_jax.data.synthetic_streets.filters import lattice_hash
from cps_jax.data.synthetic_streets.layout import SIDES


def paint_ground(canvas, look, road, street, salt):
    """Every pixel row below the horizon, as the ground plane at its depth (at most 5 km)."""
    cam, H, W = canvas.camera, canvas.H, canvas.W
    f, hc, cx, cy = cam.f, cam.hc, cam.cx, cam.cy
    r0 = max(0, int(np.ceil(cy + 0.3 - 0.5)))
    if r0 >= H:
        return
    dy = np.maximum(canvas.ys[r0:] - cy, 0.05)
    zr = np.minimum(f * hc / dy, 5000.0).astype(np.float32)  # depth per row
    Z = zr[:, None]
    X = (canvas.xs[None, :] - cx) * (Z / f)
    cls = _ground_classes(road, street, X, zr)
    table = np.stack([look.road, look.sidewalk, look.terrain])
    col = table[np.where(cls == ROAD, 0, np.where(cls == SIDEWALK, 1, 2))]
    main = (X > road.XL) & (X < road.XR)
    kerb = (cls != ROAD) & (np.minimum(np.abs(X - road.XL), np.abs(X - road.XR)) < 0.22) & ~main
    fpx = Z / f  # metres per pixel across
    fpz = Z * Z / (f * hc)  # metres per pixel along the road
    marks = _markings(road, X, Z, fpx, fpz) * main
    mcol = np.where(road.centre_zone(X)[..., None], look.centre, look.marking)
    if not canvas.photo:
        col[kerb] = look.kerb
        m = marks > 0.45
        col[m] = mcol[m]
    else:
        noise = [n[r0:H] for n in (canvas.noise.fine, canvas.noise.med, canvas.noise.coarse)]
        col = col * (1 + _ground_texture(look, road, cls, X, Z, fpz, salt, *noise))[..., None]
        col[kerb] = look.kerb * (1 + 0.05 * noise[0][kerb])[:, None]
        a = (marks * look.marking_fade)[..., None]
        col = col * (1 - a) + mcol * a
        if look.sunny:
            caster_x, caster_h = _casters(street, look.sun_side, zr)
            shadowed = (caster_x[:, None] - X) * look.sun_side < caster_h[:, None] * look.sun_k
            col = np.where(shadowed[..., None], col * look.shadow, col)
    canvas.paint((r0, H, 0, W), None, Z, cls, col)


def _side_lookup(street, s, zr):
    """For each row depth, the index of the segment of side s it falls in (len: past the end)."""
    return np.searchsorted(np.array([g["z1"] for g in street.segments[s]]), zr)


def _ground_classes(road, street, X, zr):
    """Class per ground pixel: road between the kerbs and across cross streets, then sidewalk
    (with a verge), then each segment's ground (terrain past the last segment)."""
    cls = np.full(X.shape, ROAD, np.uint8)
    for s in SIDES:
        segs = street.segments[s]
        gtab = np.array([g["ground"] for g in segs] + [TERRAIN], np.uint8)
        gtab = gtab[_side_lookup(street, s, zr)]
        cross = gtab == ROAD
        rel = (X - road.edge(s)) * s  # metres beyond the kerb
        beyond = rel > 0
        walk = beyond & (rel < road.sw[s]) & ~cross[:, None]
        cls = np.where(walk, SIDEWALK, np.where(beyond & ~walk, gtab[:, None], cls))
        if road.verge[s] > 0:
            cls = np.where(walk & (rel > 0.25) & (rel < road.verge[s]), TERRAIN, cls)
    return cls


def _casters(street, s, zr):
    """Per row depth, lateral X and height of what casts shadow from side s (inf, 0: nothing)."""
    xs, hs = [], []
    for g in street.segments[s]:
        caster = g["building"] or g["barrier"]
        xs.append(caster["X"] * s if caster else np.inf)
        hs.append(caster["h"] if caster else 0.0)
    idx = _side_lookup(street, s, zr)
    return np.array(xs + [np.inf], np.float32)[idx] * s, np.array(hs + [0.0], np.float32)[idx]


def _ground_texture(look, road, cls, X, Z, fpz, salt, fine, med, coarse):
    """Relative brightness of the ground: asphalt grain, repair patches and tyre tracks; sidewalk
    tiles with per-tile shade and grout lines; grass and soil."""
    lane_rel = ((X - road.XL) / road.lane_w) % 1.0
    tracks = np.exp(-(((np.abs(lane_rel - 0.5) * road.lane_w - 0.8) / 0.35) ** 2))
    t_road = look.grain * fine + 0.06 * med - look.patches * (coarse > 0.45) - 0.08 * tracks
    tile = look.tile
    ti, tj = np.floor(X / tile), np.floor(Z / tile)
    tv = lattice_hash(ti, tj, salt) - 0.5
    amp = np.clip(tile / fpz - 1, 0, 1)  # tiles smaller than a pixel fade out
    grout = ((X / tile - ti) < 0.08) | ((Z / tile - tj) < 0.08 * amp)
    t_walk = 0.04 * fine + amp * (look.tile_amp * tv - 0.12 * grout)
    t_terrain = 0.12 * fine + 0.15 * med + 0.1 * coarse
    return np.where(cls == ROAD, t_road, np.where(cls == SIDEWALK, t_walk, t_terrain))


def _filtered(hard, mean, w):
    """A 0/1 pattern box-filtered by the pixel: towards its mean as w (pixel / period) grows."""
    return hard * (1 - w) + mean * w


def _markings(road, X, Z, fpx, fpz):
    """Coverage in [0, 1] of painted road markings (box-filtered by the pixel footprint)."""

    def line(xk, hw):
        d = np.abs(X - xk)
        return np.clip(np.minimum(d + fpx / 2, hw) - np.maximum(d - fpx / 2, -hw), 0, None) / fpx

    def pair(x0, x1, hw):
        return np.maximum(line(x0, hw), line(x1, hw))

    cov = np.zeros(X.shape, np.float32)
    n, lw = road.n_lanes, road.lane_w
    period, duty = road.dash_period, road.dash_duty
    dash = _filtered(((Z / period) % 1.0) < duty, duty, np.clip(fpz / period, 0, 1))
    for k in range(1, n):
        xk = road.XL + k * lw
        if road.two_way and k == n // 2:  # the centre line
            if road.centre_double:
                cov = np.maximum(cov, pair(xk - 0.12, xk + 0.12, 0.06))
            else:
                cov = np.maximum(cov, line(xk, 0.08))
        else:
            cov = np.maximum(cov, line(xk, 0.07) * dash)
    if road.edge_lines:
        cov = np.maximum(cov, pair(road.XL + 0.3, road.XR - 0.3, 0.08))
    if road.zebra is not None:
        inz = (Z > road.zebra) & (Z < road.zebra + 3.5)
        stripes = (((X - road.XL) / 1.0) % 1.0) < 0.5
        cov = np.where(inz, np.maximum(cov, _filtered(stripes, 0.5, np.clip(fpx, 0, 1))), cov)
    return cov
