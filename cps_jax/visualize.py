"""Colour-palette renderings of predictions: image | ground truth | predictions | overlay, one row each."""

import numpy as np

from cps_jax.data.labels import colorize
from cps_jax.data.png import save_png  # noqa: F401 (the trainer saves its grids through here)
from cps_jax.data.transforms import IMAGENET_MEAN, IMAGENET_STD


def denormalize(image: np.ndarray) -> np.ndarray:
    """Inverse of the input normalisation, to uint8 RGB for display."""
    pixels = (np.asarray(image, np.float32) * IMAGENET_STD + IMAGENET_MEAN) * 255.0
    return np.clip(np.round(pixels), 0, 255).astype(np.uint8)


def overlay(image: np.ndarray, colour: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    return np.round((1 - alpha) * image + alpha * colour).astype(np.uint8)


def prediction_grid(images, masks, predictions: dict, palette, gap: int = 2) -> np.ndarray:
    """One row per example: image, ground truth, each prediction (in dict order), overlay of the first."""
    rows = []
    first = next(iter(predictions))
    for i in range(len(images)):
        image = denormalize(images[i])
        tiles = [image, colorize(masks[i], palette)]
        tiles += [colorize(p[i], palette) for p in predictions.values()]
        tiles.append(overlay(image, colorize(predictions[first][i], palette)))
        rows.append(_hstack(tiles, gap))
    return _vstack(rows, gap)


def _hstack(tiles, gap):
    spacer = np.full((tiles[0].shape[0], gap, 3), 255, np.uint8)
    return np.concatenate(sum(([t, spacer] for t in tiles), [])[:-1], axis=1)


def _vstack(rows, gap):
    spacer = np.full((gap, rows[0].shape[1], 3), 255, np.uint8)
    return np.concatenate(sum(([r, spacer] for r in rows), [])[:-1], axis=0)
