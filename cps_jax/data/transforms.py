"""Host-side numpy augmentations for the grain input pipeline.

These follow the reference CPS pipeline: horizontal flip (p=0.5), a random scale from a fixed set
(bilinear image, nearest-neighbour mask), ImageNet normalisation, then a random crop with centred
padding (image 0.0 = mean colour after normalising, mask IGNORE_LABEL). One `np.random.Generator`
per example drives every random choice, so image and mask always get the same transform and the
result is reproducible from the generator's seed.

Note: PIL's bilinear resize antialiases when downscaling (the reference uses OpenCV, which does
not), so 0.5x/0.75x images are slightly smoother than the reference's.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from PIL import Image

from cps_jax.data.labels import IGNORE_LABEL

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "IGNORE_LABEL",
    "DEFAULT_SCALES",
    "normalize",
    "hflip",
    "rescale",
    "crop_or_pad",
    "train_transform",
    "eval_transform",
    "validate_example",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)  # RGB, on [0, 1] pixels
IMAGENET_STD = (0.229, 0.224, 0.225)
DEFAULT_SCALES = (0.5, 0.75, 1.0, 1.5, 1.75, 2.0)


def _mask_2d(mask: np.ndarray) -> np.ndarray:
    """Accept [H,W] or [H,W,1] masks (TFDS stores segmentation masks with a channel axis)."""
    mask = np.asarray(mask)
    if mask.ndim == 3 and mask.shape[-1] == 1:
        mask = mask[..., 0]
    if mask.ndim != 2:
        raise ValueError(f"mask must be [H,W] or [H,W,1], got shape {mask.shape}")
    return mask


def normalize(
    image_uint8: np.ndarray,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> np.ndarray:
    """(x / 255 - mean) / std per channel, float32 [H,W,3]."""
    mean = np.asarray(mean, np.float32)
    std = np.asarray(std, np.float32)
    return (np.asarray(image_uint8, np.float32) / np.float32(255.0) - mean) / std


def hflip(image: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mirror image and mask left-right (contiguous copies, so later PIL/numpy ops are cheap)."""
    return np.ascontiguousarray(image[:, ::-1]), np.ascontiguousarray(mask[:, ::-1])


def _round_half_up(x: float) -> int:
    return int(math.floor(x + 0.5))


def rescale(
    image_uint8: np.ndarray, mask_uint8: np.ndarray, scale: float
) -> tuple[np.ndarray, np.ndarray]:
    """Resize by `scale` to (round(h*s), round(w*s)): bilinear image, nearest mask (no new labels)."""
    mask = _mask_2d(mask_uint8)
    if scale == 1.0:
        return image_uint8, mask
    if mask.dtype != np.uint8:  # PIL mode 'L' needs uint8; refuse values that would wrap around
        if mask.size and (mask.min() < 0 or mask.max() > 255):
            raise ValueError(
                f"mask values must fit in uint8 to be resized, got range [{mask.min()}, {mask.max()}]"
            )
        mask = mask.astype(np.uint8)
    h, w = mask.shape
    size = (
        max(1, _round_half_up(w * scale)),
        max(1, _round_half_up(h * scale)),
    )  # PIL wants (W, H)
    image = np.asarray(
        Image.fromarray(np.asarray(image_uint8, np.uint8)).resize(size, Image.BILINEAR)
    )
    mask = np.asarray(Image.fromarray(mask).resize(size, Image.NEAREST))
    return image, mask


def crop_or_pad(
    image_f32: np.ndarray,
    mask: np.ndarray,
    crop_hw: tuple[int, int],
    offset: tuple[int, int] | None,
    rng: np.random.Generator | None,
) -> tuple[np.ndarray, np.ndarray]:
    """Pad to at least `crop_hw`, centred, then crop `crop_hw` at `offset` or a uniform random one.

    Padding is split equally with the extra pixel at the end (bottom/right), as the reference does;
    image padding is 0.0 (the mean colour once normalised), mask padding IGNORE_LABEL so padded
    pixels carry no supervised loss.
    """
    mask = _mask_2d(mask)
    ch, cw = crop_hw
    h, w = mask.shape
    if image_f32.shape[:2] != (h, w):
        raise ValueError(f"image {image_f32.shape} and mask {mask.shape} differ in H,W")
    ph, pw = max(ch - h, 0), max(cw - w, 0)
    if ph or pw:
        pads = ((ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2))
        image_f32 = np.pad(image_f32, pads + ((0, 0),), constant_values=0.0)
        mask = np.pad(mask, pads, constant_values=IGNORE_LABEL)
        h, w = mask.shape
    if offset is None:
        if rng is None:
            raise ValueError("crop_or_pad needs an rng when no offset is given")
        y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
    else:
        y, x = offset
        if not (0 <= y <= h - ch and 0 <= x <= w - cw):
            raise ValueError(
                f"crop offset {offset} of size {crop_hw} does not fit padded size {(h, w)}"
            )
    return image_f32[y : y + ch, x : x + cw], mask[y : y + ch, x : x + cw]


def train_transform(
    image_uint8: np.ndarray,
    mask_uint8: np.ndarray,
    rng: np.random.Generator,
    *,
    crop_hw: tuple[int, int],
    scales: Sequence[float] = DEFAULT_SCALES,
    flip: bool = True,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> dict:
    """Flip (p=0.5) -> random scale from `scales` -> normalise -> random crop with centred padding.

    The rng draws happen in a fixed order (flip, scale, crop offset), so a given seed always gives
    the same result. Returns dict(image=float32 [ch,cw,3], mask=int32 [ch,cw]).
    """
    image, mask = image_uint8, _mask_2d(mask_uint8)
    if flip and rng.random() < 0.5:
        image, mask = hflip(image, mask)
    scale = float(scales[int(rng.integers(len(scales)))])
    image, mask = rescale(image, mask, scale)
    image, mask = crop_or_pad(normalize(image, mean, std), mask, crop_hw, None, rng)
    return {"image": np.ascontiguousarray(image, np.float32), "mask": mask.astype(np.int32)}


def eval_transform(
    image_uint8: np.ndarray,
    mask_uint8: np.ndarray,
    *,
    pad_hw: tuple[int, int] | None = None,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> dict:
    """Normalise; optionally pad bottom/right to `pad_hw` (image 0.0, mask IGNORE_LABEL).

    Padding at the bottom/right keeps pixel (0, 0) in place, so predictions can be cropped back
    with [:h, :w]; the ignore label keeps padded pixels out of the confusion matrix.
    """
    image, mask = normalize(image_uint8, mean, std), _mask_2d(mask_uint8)
    if pad_hw is not None:
        h, w = mask.shape
        if h > pad_hw[0] or w > pad_hw[1]:
            raise ValueError(f"image of size {(h, w)} is larger than pad_hw={tuple(pad_hw)}")
        pads = ((0, pad_hw[0] - h), (0, pad_hw[1] - w))
        image = np.pad(image, pads + ((0, 0),), constant_values=0.0)
        mask = np.pad(mask, pads, constant_values=IGNORE_LABEL)
    return {"image": image, "mask": mask.astype(np.int32)}


def validate_example(image: np.ndarray, mask: np.ndarray, *, num_classes: int, source: str) -> None:
    """Raise ValueError (message starts with `source`) if an example is malformed.

    Checks: image is uint8 [H,W,3]; mask is integer [H,W] or [H,W,1] with the image's H,W; values
    lie in [0, num_classes) or are IGNORE_LABEL.
    """
    image, mask = np.asarray(image), np.asarray(mask)
    if image.ndim != 3 or image.shape[-1] != 3 or image.dtype != np.uint8:
        raise ValueError(f"{source}: image must be uint8 [H,W,3], got {image.dtype} {image.shape}")
    if not (mask.ndim == 2 or (mask.ndim == 3 and mask.shape[-1] == 1)):
        raise ValueError(f"{source}: mask must be [H,W] or [H,W,1], got {mask.shape}")
    if image.shape[:2] != mask.shape[:2]:
        raise ValueError(
            f"{source}: image shape {image.shape} and mask shape {mask.shape} differ in H,W"
        )
    if mask.dtype.kind not in "iu":  # float masks would hide fractional labels from the range check
        raise ValueError(f"{source}: mask must have an integer dtype, got {mask.dtype}")
    values = np.unique(mask)
    bad = values[((values < 0) | (values >= num_classes)) & (values != IGNORE_LABEL)]
    if bad.size:
        shown = ", ".join(str(v) for v in bad[:10]) + (", ..." if bad.size > 10 else "")
        raise ValueError(
            f"{source}: mask has values [{shown}] outside the allowed range "
            f"[0, {num_classes}) or {IGNORE_LABEL} (ignore)"
        )
