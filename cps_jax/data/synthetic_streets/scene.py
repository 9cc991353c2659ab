"""One scene, end to end: sample its layout and appearance, paint it, develop the image.

Two random streams per seed: one draws the layout and appearance in the same order in every
domain, the other only the photo-domain noise fields and sensor noise, so the mask never
depends on the domain.
"""

import dataclasses

import numpy as np

from cps_jax.data.synthetic_streets import ground, scenery
from cps_jax.data.synthetic_streets.camera import Camera, sample_camera
from cps_jax.data.synthetic_streets.cars import paint_car
from cps_jax.data.synthetic_streets.develop import develop
from cps_jax.data.synthetic_streets.filters import noise_fields
from cps_jax.data.synthetic_streets.layout import SIDES, Road, Street, sample_road, sample_street
from cps_jax.data.synthetic_streets.look import Look, sample_look
from cps_jax.data.synthetic_streets.painters import paint_lamp, paint_light, paint_sign, paint_tree
from cps_jax.data.synthetic_streets.people import paint_person
from cps_jax.data.synthetic_streets.props import sample_props
from cps_jax.data.synthetic_streets.raster import Canvas
from cps_jax.data.synthetic_streets.weather import Condition, draw_condition

DOMAINS = ("photo", "render", "weather")
PAINTERS = {
    "lamp": paint_lamp,
    "tree": paint_tree,
    "sign": paint_sign,
    "light": paint_light,
    "car": paint_car,
    "person": paint_person,
}


@dataclasses.dataclass(frozen=True)
class Scene:
    """What one scene is made of, before it is painted."""

    height: int
    width: int
    salt: int  # of the sidewalk tiles' hash
    camera: Camera
    look: Look
    road: Road
    street: Street
    props: list  # [(z, kind, params)], far to near
    condition: Condition  # "clear" outside the weather domain


def sample_scene(seed, height, width, domain):
    rng = np.random.default_rng([int(seed), 0x5EED])
    salt = int(rng.integers(1, 2**31))
    camera = sample_camera(rng, height, width)
    look = sample_look(rng, width)
    road = sample_road(rng)
    street = sample_street(rng, camera, look, road, height, width)
    props = sample_props(rng, look, road, street)
    condition = draw_condition(seed)
    if domain != "weather":
        condition = condition._replace(name="clear")
    return Scene(height, width, salt, camera, look, road, street, props, condition)


def paint(scene, noise):
    """The canvas with everything painted, far parts first (the z-buffer settles the rest)."""
    canvas = Canvas(scene.height, scene.width, scene.camera, noise)
    look, street = scene.look, scene.street
    scenery.paint_sky(canvas, look)
    scenery.paint_skyline(canvas, street)
    for s in SIDES:
        for b in street.back[s]:
            scenery.paint_building(canvas, look, b, b["z0"], b["z1"])
        for seg in reversed(street.segments[s]):
            if seg["building"] is not None:
                scenery.paint_building(canvas, look, seg["building"], seg["z0"], seg["z1"])
            if seg["barrier"] is not None:
                scenery.paint_barrier(canvas, look, seg["barrier"], seg["z0"], seg["z1"])
    ground.paint_ground(canvas, look, scene.road, street, scene.salt)
    for _, kind, params in scene.props:
        PAINTERS[kind](canvas, look, params)
    return canvas


def render_layers(seed: int, height: int, width: int, domain: str = "photo"):
    """(image uint8 [H, W, 3], mask uint8 [H, W], depth float32 [H, W] in metres, inf at the
    sky) of scene `seed`."""
    if domain not in DOMAINS:
        raise ValueError(f"domain must be one of {DOMAINS}, got {domain!r}")
    if height < 8 or width < 8:
        raise ValueError(f"image too small: {height}x{width}")
    height, width = int(height), int(width)
    scene = sample_scene(seed, height, width, domain)
    rng = np.random.default_rng([int(seed), 0x7E47])
    noise = None if domain == "render" else noise_fields(rng, height, width)
    canvas = paint(scene, noise)
    image = develop(canvas, scene.look, scene.condition, rng, int(seed))
    return image, canvas.mask, canvas.depth


def render_scene(seed: int, height: int, width: int, domain: str = "photo"):
    """Renders one scene: (image uint8 [H, W, 3], mask uint8 [H, W] with values in [0, NUM_CLASSES)).

    Deterministic in `seed`; `domain` (one of DOMAINS) changes the appearance only, never the
    mask.
    """
    image, mask, _ = render_layers(seed, height, width, domain)
    return image, mask
