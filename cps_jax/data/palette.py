"""Classes and colours of the embedded `synthetic_streets` data set (Cityscapes names and colours)."""

import numpy as np

from cps_jax.data import labels
from cps_jax.data.labels import IGNORE_LABEL  # noqa: F401 (synthetic_streets imports it from here)

CLASS_NAMES = (
    "road",
    "sidewalk",
    "building",
    "wall",
    "fence",
    "pole",
    "traffic_light",
    "traffic_sign",
    "vegetation",
    "terrain",
    "sky",
    "person",
    "car",
)
NUM_CLASSES = len(CLASS_NAMES)

# Cityscapes colours of the same classes (cityscapesScripts `labels.py`).
PALETTE = np.array(
    [
        [128, 64, 128],  # road
        [244, 35, 232],  # sidewalk
        [70, 70, 70],  # building
        [102, 102, 156],  # wall
        [190, 153, 153],  # fence
        [153, 153, 153],  # pole
        [250, 170, 30],  # traffic light
        [220, 220, 0],  # traffic sign
        [107, 142, 35],  # vegetation
        [152, 251, 152],  # terrain
        [70, 130, 180],  # sky
        [220, 20, 60],  # person
        [0, 0, 142],  # car
    ],
    np.uint8,
)

(
    ROAD,
    SIDEWALK,
    BUILDING,
    WALL,
    FENCE,
    POLE,
    TRAFFIC_LIGHT,
    TRAFFIC_SIGN,
    VEGETATION,
    TERRAIN,
    SKY,
    PERSON,
    CAR,
) = range(NUM_CLASSES)


def colorize(mask: np.ndarray) -> np.ndarray:
    """`labels.colorize` in these colours (synthetic_streets imports it from here)."""
    return labels.colorize(mask, PALETTE)
