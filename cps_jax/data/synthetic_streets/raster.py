"""Z-buffered rasterisation: the canvas of one scene and the shapes drawn on it.

A canvas holds the colour image, the class mask and the depth of the nearest surface per pixel.
Every shape writes its class and colour only where it is nearer than what is there, so shapes
may be drawn in any order; near things occlude far ones. Pixel centres are at half-integers.
"""

import numpy as np

from cps_jax.data.palette import SIDEWALK, SKY, TERRAIN

Box = tuple  # (r0, r1, c0, c1): rows [r0, r1) and columns [c0, c1) of the image


def _span(lo, hi, size):
    """The pixels [i0, i1) of [0, size) whose centres lie in [lo, hi]."""
    return max(0, int(np.ceil(lo - 0.5))), min(size, int(np.floor(hi - 0.5)) + 1)


class Canvas:
    """Image [H, W, 3] float, mask [H, W] uint8 (sky where nothing is drawn) and depth [H, W].

    `noise` (filters.NoiseFields) textures colours in the photo domain; None in the render
    domain, where every shape takes its flat colour.
    """

    def __init__(self, height, width, camera, noise=None):
        self.H, self.W = height, width
        self.camera = camera
        self.noise = noise
        self.photo = noise is not None
        self.ys = np.arange(height, dtype=np.float32) + 0.5
        self.xs = np.arange(width, dtype=np.float32) + 0.5
        self.img = np.empty((height, width, 3), np.float32)
        self.mask = np.full((height, width), SKY, np.uint8)
        self.depth = np.full((height, width), np.inf, np.float32)

    def box(self, x0, x1, y0, y1):
        """The Box of the pixels inside [x0, x1] x [y0, y1], or None if there are none."""
        c0, c1 = _span(x0, x1, self.W)
        r0, r1 = _span(y0, y1, self.H)
        if c1 <= c0 or r1 <= r0:
            return None
        return r0, r1, c0, c1

    def paint(self, box, m, z, cls, col):
        """Z-buffered write of depth `z`, class `cls` and colour `col` inside `box` where mask `m`
        (None: everywhere). z and cls are scalars or per-pixel; col [3] or broadcastable to
        [h, w, 3]."""
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

    def texture(self, box, col, amp=0.08, field="fine"):
        """`col` modulated by `amp` times a noise field (photo domain only) over `box`."""
        if not self.photo or amp <= 0:
            return col
        r0, r1, c0, c1 = box
        n = getattr(self.noise, field)[r0:r1, c0:c1]
        return col * (1 + amp * n)[..., None]

    def noise_at(self, name, box):
        """Noise field `name` over `box`."""
        r0, r1, c0, c1 = box
        return getattr(self.noise, name)[r0:r1, c0:c1]

    # ------------------------------------------------------------------------ shapes in pixels
    def rect(self, px, py, k, a0, a1, b0, b1, z, cls, col, tex=0.0):
        """The rectangle [a0, a1] x [b0, b1] in metres of billboard (px, py, k) (Camera)."""
        box = self.box(px + a0 * k, px + a1 * k, py - b1 * k, py - b0 * k)
        if box is not None:
            self.paint(box, None, z, cls, self.texture(box, col, tex))
        return box

    def ellipse_mask(self, x, y, rx, ry):
        """(box, inside) of the axis-aligned ellipse at pixel (x, y), or None."""
        box = self.box(x - rx, x + rx, y - ry, y + ry)
        if box is None:
            return None
        r0, r1, c0, c1 = box
        m = ((self.xs[None, c0:c1] - x) / rx) ** 2 + ((self.ys[r0:r1, None] - y) / ry) ** 2 <= 1
        return box, m

    def ellipse(self, x, y, rx, ry, z, cls, col, tex=0.0, field="fine"):
        return self._fill(self.ellipse_mask(x, y, rx, ry), z, cls, col, tex, field)

    def poly_mask(self, pts):
        """(box, inside) of the convex polygon with pixel vertices [(x, y), ...], or None."""
        pts = np.asarray(pts, np.float32)
        box = self.box(pts[:, 0].min(), pts[:, 0].max(), pts[:, 1].min(), pts[:, 1].max())
        if box is None:
            return None
        r0, r1, c0, c1 = box
        x, y = self.xs[None, c0:c1], self.ys[r0:r1, None]
        q = np.roll(pts, -1, axis=0)
        area = np.sum(pts[:, 0] * q[:, 1] - q[:, 0] * pts[:, 1])
        sgn = 1.0 if area >= 0 else -1.0  # either winding
        m = None
        for (ax, ay), (bx, by) in zip(pts, q):
            e = ((bx - ax) * (y - ay) - (by - ay) * (x - ax)) * sgn >= 0
            m = e if m is None else m & e
        return box, m

    def poly(self, pts, z, cls, col, tex=0.0):
        return self._fill(self.poly_mask(pts), z, cls, col, tex)

    def _fill(self, shape, z, cls, col, tex, field="fine"):
        if shape is None:
            return None
        box, m = shape
        self.paint(box, m, z, cls, self.texture(box, col, tex, field))
        return box

    def shade_ground(self, shape, factor):
        """Darkens the ground (road, sidewalk, terrain) inside a (box, inside) shape: contact
        shadows under cars and people."""
        if shape is None:
            return
        (r0, r1, c0, c1), m = shape
        g = self.mask[r0:r1, c0:c1]
        sel = m & (g <= SIDEWALK) | m & (g == TERRAIN)
        self.img[r0:r1, c0:c1][sel] *= factor

    # ----------------------------------------------------------------------- planes in metres
    def side_plane(self, X, z0, z1, y0, y1):
        """A vertical plane parallel to the road at lateral X, depth in [z0, z1], height in [y0, y1].

        Returns (box, Z [1, w] per-column depth, V [h, w] world height, inside mask) or None.
        """
        cam = self.camera
        cx, cy, f, hc = cam.cx, cam.cy, cam.f, cam.hc
        z0 = max(z0, 0.3)
        if z1 <= z0:
            return None
        xa, xb = cx + f * X / z0, cx + f * X / z1
        c0, c1 = _span(min(xa, xb), max(xa, xb), self.W)
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
        r0, r1 = _span((cy + f * (hc - y1) / Zv).min(), (cy + f * (hc - y0) / Zv).max(), self.H)
        if r1 <= r0:
            return None
        V = hc - (self.ys[r0:r1, None] - cy) * (Z[None, :] / f)
        m = valid[None, :] & (V >= y0) & (V <= y1)
        return (r0, r1, c0, c1), Z[None, :], V, m

    def front_face(self, X0, X1, y0, y1, z):
        """A vertical plane facing the camera at depth z: (box, U [1, w] lateral, V [h, 1] height)
        or None."""
        if z < 0.3:
            return None
        px, py, k = self.camera.billboard(0.0, z)
        box = self.box(px + min(X0, X1) * k, px + max(X0, X1) * k, py - y1 * k, py - y0 * k)
        if box is None:
            return None
        r0, r1, c0, c1 = box
        U = (self.xs[None, c0:c1] - px) / k
        V = (py - self.ys[r0:r1, None]) / k
        return box, U, V


class Billboard:
    """Shapes on an upright plane facing the camera at lateral X and depth z, in metres of the
    plane: (a, b) is `a` to the right of X and `b` above the road."""

    def __init__(self, canvas, X, z):
        self.canvas, self.z = canvas, z
        self.px, self.py, self.k = canvas.camera.billboard(X, z)

    def at(self, a, b):
        """Pixel (x, y) of the point (a, b)."""
        return self.px + a * self.k, self.py - b * self.k

    def rect(self, a0, a1, b0, b1, cls, col, tex=0.0):
        return self.canvas.rect(self.px, self.py, self.k, a0, a1, b0, b1, self.z, cls, col, tex)

    def ellipse(self, a, b, ra, rb, cls, col, tex=0.0, field="fine", pad=0.0):
        """The ellipse at (a, b) with radii (ra, rb) metres, `pad` pixels added to both radii."""
        x, y = self.at(a, b)
        k = self.k
        return self.canvas.ellipse(x, y, ra * k + pad, rb * k + pad, self.z, cls, col, tex, field)

    def poly(self, pts, cls, col, tex=0.0):
        """The convex polygon with vertices [(a, b), ...]."""
        return self.canvas.poly([self.at(a, b) for a, b in pts], self.z, cls, col, tex)

    def trapezoid(self, half0, b0, half1, b1, cls, col, tex=0.0):
        """The trapezoid symmetric about a = 0: half-width half0 at height b0, half1 at b1."""
        return self.poly([(-half0, b0), (half0, b0), (half1, b1), (-half1, b1)], cls, col, tex)
