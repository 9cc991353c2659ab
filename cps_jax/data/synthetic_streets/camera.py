"""The pinhole camera of a scene and its projections.

World coordinates are in metres: X lateral (right positive, 0 at the camera), height up from the
road and z depth along the street. The camera looks down the street, level, from height `hc`.
"""

import dataclasses


@dataclasses.dataclass(frozen=True)
class Camera:
    f: float  # focal length in pixels
    hc: float  # height above the road in metres
    cx: float  # principal point (the vanishing point of the street), pixels
    cy: float  # the horizon row

    def billboard(self, X, z):
        """(px, py, k) of an upright plane facing the camera at lateral X and depth z: the point
        (a, b) metres on it (b up from the road) is at pixel (px + a * k, py - b * k)."""
        k = self.f / z
        return self.cx + X * k, self.cy + self.hc * k, k

    def ground_point(self, X, z):
        """Pixel (x, y) of the road point at lateral X and depth z."""
        return self.cx + self.f * X / z, self.cy + self.f * self.hc / z


def sample_camera(rng, height, width):
    """Focal length, camera height, horizon and vanishing point vary per scene."""
    f = width * rng.uniform(0.72, 1.05)
    hc = rng.uniform(1.2, 1.8)
    cy = height * rng.uniform(0.30, 0.50)
    cx = width * (0.5 + rng.uniform(-0.16, 0.16))
    return Camera(f=f, hc=hc, cx=cx, cy=cy)
