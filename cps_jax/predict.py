"""Segmentation of image files: label PNGs, colour PNGs and overlays (`cps-predict`).

Images of any size and mode (grey, RGB, RGBA, palette; PNG, JPEG, ...) are converted to RGB and
grouped by canvas size (`inference.canvas_size`), so each batch pads its images to one shape and
the jitted program is reused across batches. With the default `pad_multiple` of 1 a canvas is one
image size, so whole-image predictions are those of the image alone. A file that cannot be read is
reported and skipped; the others are still written.

Outputs, under the output folder, each named after the input's path relative to the input folder
(or the matched files' common folder), with the suffix `.png`:
  labels/   class ids (train ids, or the data set's label ids, e.g. Cityscapes `labelIds`, which is
            what cityscapesScripts' evaluator reads; it finds `<city>_<seq>_<frame>*.png`)
  color/    the classes in the data set's palette
  overlay/  the palette over the image
"""

from __future__ import annotations

import glob
import os
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image
from tqdm import tqdm

from cps_jax import evaluate, inference, parallel, visualize
from cps_jax.data import archives, transforms
from cps_jax.data.labels import colorize
from cps_jax.data.png import save_png

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm")
OUTPUTS = ("labels", "color", "overlay")


def find_images(spec: str) -> list[tuple[str, str]]:
    """(path, output name without suffix) of each image named by a file, a folder (searched
    recursively for image suffixes) or a glob pattern (`**` allowed)."""
    if os.path.isdir(spec):
        paths = sorted(
            os.path.join(root, name)
            for root, _, names in os.walk(spec)
            for name in names
            if name.lower().endswith(IMAGE_SUFFIXES)
        )
        base = spec
    else:
        paths = [spec] if os.path.isfile(spec) else sorted(glob.glob(spec, recursive=True))
        paths = [p for p in paths if os.path.isfile(p)]
        base = os.path.commonpath([os.path.dirname(os.path.abspath(p)) for p in paths] or ["."])
    if not paths:
        raise ValueError(f"--input {spec!r}: no image files found (a file, a folder or a glob)")
    return [(p, os.path.splitext(os.path.relpath(os.path.abspath(p), base))[0]) for p in paths]


def read_rgb(path: str) -> np.ndarray:
    """uint8 [H, W, 3], as the training images are stored (archives.rgb_array): grey, palette and
    alpha converted (alpha dropped), 16-bit images scaled to 8 bits."""
    with Image.open(path) as image:
        return archives.rgb_array(image, path)


def _image_size(path: str) -> tuple[int, int]:
    with Image.open(path) as image:  # reads the header only
        return image.height, image.width


def make_predict_fn(graphdef, nets: dict, options: inference.InferenceOptions, mesh) -> Callable:
    """(images [N,H,W,3] normalised, sizes [N,2]) -> class ids [N,H,W] (numpy), on every device of
    `mesh`; the averaged-softmax ensemble when `nets` holds two."""
    name = "ensemble" if len(nets) > 1 else next(iter(nets))

    def labels(nets, images, sizes):
        logits = evaluate.net_logits(graphdef, nets, images, sizes, options)
        out = evaluate.predictions(logits)[name]
        small = next(iter(logits.values())).shape[-1] <= 256
        return out.astype(jnp.uint8) if small else out  # a quarter of the transfer

    step = jax.jit(
        labels,
        in_shardings=(parallel.replicated(mesh), *[parallel.batch_sharding(mesh)] * 2),
        out_shardings=parallel.batch_sharding(mesh),
    )
    nets = jax.device_put(nets, parallel.replicated(mesh))

    def run(images: np.ndarray, sizes: np.ndarray) -> np.ndarray:
        batch = parallel.global_batch({"image": images, "size": sizes}, mesh)
        return np.asarray(jax.device_get(step(nets, batch["image"], batch["size"])))

    return run


def write_outputs(
    output_dir: str,
    name: str,
    image: np.ndarray,
    labels: np.ndarray,
    *,
    palette: np.ndarray,
    label_ids: np.ndarray | None = None,
    outputs: Sequence[str] = OUTPUTS,
    alpha: float = 0.5,
) -> None:
    """The PNGs of one image's class map `labels` [H, W] (train ids)."""
    colour = colorize(labels, palette)
    images = {
        "labels": (np.asarray(label_ids)[labels] if label_ids is not None else labels),
        "color": colour,
        "overlay": visualize.overlay(image, colour, alpha),
    }
    for kind in outputs:
        path = os.path.join(output_dir, kind, name + ".png")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        save_png(path, np.asarray(images[kind]).astype(np.uint8))


def predict_files(
    files: Sequence[tuple[str, str]],
    output_dir: str,
    predict_fn: Callable,
    *,
    options: inference.InferenceOptions,
    batch_size: int,
    palette: np.ndarray,
    label_ids: np.ndarray | None = None,
    outputs: Sequence[str] = OUTPUTS,
    alpha: float = 0.5,
    progress: bool = True,
) -> list[tuple[str, str]]:
    """Predicts and writes every readable file of `files` (from `find_images`); returns the
    (path, reason) of each file that could not be read."""
    unknown = set(outputs) - set(OUTPUTS)
    if unknown:
        raise ValueError(f"--outputs: unknown {sorted(unknown)}; expected some of {OUTPUTS}")
    if label_ids is not None and len(palette) > len(label_ids):
        raise ValueError(f"{len(label_ids)} label ids for {len(palette)} classes")
    failed, groups = [], {}
    for path, name in files:
        try:
            size = _image_size(path)
        except Exception as error:  # PIL raises many types for broken files
            failed.append((path, _reason(error)))
            continue
        groups.setdefault(inference.canvas_size([size], options), []).append((path, name))
    bar = tqdm(total=len(files), unit="img", disable=not progress)
    bar.update(len(failed))
    for canvas, group in sorted(groups.items()):
        for start in range(0, len(group), batch_size):
            chunk, loaded = group[start : start + batch_size], []
            for path, name in chunk:
                try:
                    loaded.append((name, read_rgb(path)))
                except Exception as error:
                    failed.append((path, _reason(error)))
            if loaded:
                images, sizes = _canvas_batch([im for _, im in loaded], canvas, batch_size)
                labels = predict_fn(images, sizes)
                for (name, image), label in zip(loaded, labels):
                    write_outputs(
                        output_dir,
                        name,
                        image,
                        label[: image.shape[0], : image.shape[1]],
                        palette=palette,
                        label_ids=label_ids,
                        outputs=outputs,
                        alpha=alpha,
                    )
            bar.update(len(chunk))
    bar.close()
    return failed


def _canvas_batch(images, canvas, batch_size):
    """Normalised images padded to `canvas`, then blank rows up to `batch_size`."""
    rows = [
        transforms.eval_transform(im, np.zeros(im.shape[:2], np.uint8), pad_hw=canvas)["image"]
        for im in images
    ]
    sizes = [im.shape[:2] for im in images]
    blank = batch_size - len(rows)
    rows += [np.zeros((*canvas, 3), np.float32)] * blank
    sizes += [canvas] * blank
    return np.stack(rows), np.asarray(sizes, np.int32)


def _reason(error: Exception) -> str:
    return f"{type(error).__name__}: {error}"
