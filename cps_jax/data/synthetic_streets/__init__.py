r"""`synthetic_streets`: procedurally generated street scenes for semi-supervised segmentation.

Every scene is a deterministic function of an integer seed. A pinhole camera stands on a straight
street (horizon, vanishing point, focal length and camera height vary per scene); the road has
lanes, markings and sometimes a zebra crossing, sidewalks with kerbs on both sides, cross streets,
rows of buildings with windows and shop fronts (plus a back row and a distant skyline), walls,
fences and hedges, parks with trees, street lamps, traffic signs and lights, parked and moving cars
and pedestrians. Geometry is rasterised with a z-buffer (pure, vectorised numpy), so near things
occlude far ones.

The appearance of each class varies a lot from scene to scene (colour palettes per class,
procedural textures, sun and shadows, haze, exposure, white balance, blur and sensor noise), so a
few labelled images do not cover the appearance space and unlabelled ones carry information.

Three domains share the layout: `render` (flat colours, hard edges, no noise: a game engine),
`photo` (textured, lit, hazy, blurred and noisy; the default) and `weather` (`photo` under varied
weather and time of day: 40% clear, the rest overcast, rain, fog, dusk or night). The same seed
gives the same mask in all three.

  image, mask = render_scene(seed=3, height=96, width=192)          # uint8 [H,W,3], [H,W]
  ds = prepare("data")                                              # TFDS, array_record
  ds.as_data_source(split="train")[0]  # {"image", "mask" [H,W,1], "id", "classes" multi-hot}

`python -m cps_jax.data.synthetic_streets --data_dir DIR [--height 96 ...]` prepares it ahead.

Modules, in the order a scene passes through them: colours (the colour tables), camera, look
(appearance), layout (road and both sides), props (objects), weather (conditions); raster (the
z-buffered canvas), scenery, ground, painters, cars and people (painting), filters (noise and
blur), develop (the camera response); scene (all of it for one seed), dataset (the TFDS
builder) and cli (the command line).
"""

from cps_jax.data.palette import CLASS_NAMES, IGNORE_LABEL, NUM_CLASSES, PALETTE, colorize
from cps_jax.data.synthetic_streets.dataset import (
    SyntheticStreets,
    SyntheticStreetsConfig,
    builder,
    example_seed,
    prepare,
)
from cps_jax.data.synthetic_streets.dataset import (
    _make_example as _make_example,  # one example at a time, for the tests
)
from cps_jax.data.synthetic_streets.scene import DOMAINS, render_layers, render_scene
from cps_jax.data.synthetic_streets.weather import CONDITION_PROBS, CONDITIONS, scene_condition

__all__ = [
    "CLASS_NAMES",
    "PALETTE",
    "NUM_CLASSES",
    "IGNORE_LABEL",
    "DOMAINS",
    "CONDITIONS",
    "CONDITION_PROBS",
    "scene_condition",
    "render_scene",
    "render_layers",
    "example_seed",
    "SyntheticStreets",
    "SyntheticStreetsConfig",
    "builder",
    "prepare",
    "colorize",
]
