"""Stage 2 of semi-and-weakly supervised training (PCT): a run's pseudo labels for every image with
image-level labels, written as an `image_folder` that plain supervised training reads.

Each image-labeled training image gets the class-masked argmax of the run's first net (PCT's
hybrid net) over multi-scale and flip inference (`options`), restricted to the classes its
image-level labels name; pixel-labeled images keep their ground truth; the validation split is
copied with its masks, so that the retrained model is scored on the same images:

  OUT/classes.json, OUT/images/<id>.png, OUT/masks/<id>.png, OUT/val/images/, OUT/val/masks/

Where the data set has masks for the image-labeled images (synthetic_streets, or any labeled set
partitioned), the pseudo labels are scored against them: pixel accuracy and mIoU, in
OUT/pseudo_labels.json.
"""

import json
import os
import time

import jax
import numpy as np

from cps_jax import evaluate, inference, input_pipeline, metrics, pseudo_labels
from cps_jax.data import image_folder
from cps_jax.data.labels import IGNORE_LABEL
from cps_jax.data.png import png_bytes
from cps_jax.data.transforms import eval_transform
from cps_jax.logging_utils import format_seconds
from cps_jax.models.functional import net_graphdef

SUMMARY_FILE = "pseudo_labels.json"


def write_png(path: str, array: np.ndarray) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(png_bytes(np.asarray(array, np.uint8)))


def ident_of(example) -> str:
    value = example["id"]
    return value.decode() if isinstance(value, bytes) else str(value)


def image_and_mask(example):
    image = np.asarray(example["image"], np.uint8)
    mask = np.asarray(example["mask"])
    return image, (mask[..., 0] if mask.ndim == 3 else mask).astype(np.uint8)


def predictor(config, net: dict, num_classes: int, options: inference.InferenceOptions):
    """(uint8 image [H,W,3], classes [C] or None) -> (labels [H,W], confidence [H,W]): the net's
    argmax by `options`, among the image's classes if given, and its softmax probability."""
    graphdef = net_graphdef(config.model, num_classes)

    @jax.jit
    def predict(net, image, size, classes):
        logits = evaluate.net_logits(graphdef, {"net": net}, image, size, options)["net"]
        out = pseudo_labels.select(logits, pseudo_labels.Options(), classes=classes)
        return out.labels, out.confidence

    def run(image: np.ndarray, classes=None):
        h, w = image.shape[:2]
        canvas = inference.canvas_size([(h, w)], options)
        item = eval_transform(image, np.zeros((h, w), np.uint8), pad_hw=canvas)
        known = np.ones(num_classes, np.uint8) if classes is None else classes
        labels, confidence = predict(net, item["image"][None], np.asarray([[h, w]], np.int32), known[None])
        return np.asarray(labels[0, :h, :w]), np.asarray(confidence[0, :h, :w])

    return run


def labeler(config, net: dict, num_classes: int, options: inference.InferenceOptions):
    """(uint8 image [H,W,3], classes [C]) -> the net's class-masked argmax [H,W] by `options`."""
    predict = predictor(config, net, num_classes, options)
    return lambda image, classes: predict(image, classes)[0]


def write_class_file(out_dir: str, data) -> None:
    palette = np.asarray(data.palette, np.uint8)
    classes = [{"name": n, "color": [int(v) for v in palette[k]]} for k, n in enumerate(data.class_names)]
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, image_folder.CLASS_FILE), "w") as f:
        json.dump({"classes": classes, "ignore_index": IGNORE_LABEL}, f, indent=1)


def write_split(source, out_dir: str, sub: str = "") -> None:
    """Every example of `source` with its mask into OUT/[sub/]images, masks."""
    for i in range(len(source)):
        example = source[i]
        image, mask = image_and_mask(example)
        ident = ident_of(example)
        write_png(os.path.join(out_dir, sub, "images", ident + ".png"), image)
        write_png(os.path.join(out_dir, sub, "masks", ident + ".png"), mask)


def write(config, net: dict, data, out_dir: str, options, *, progress: bool = True) -> dict:
    """Writes the stage-2 folder of `data` as `config` partitions it; returns the summary."""
    labeled, _, image_labeled = input_pipeline.partition_sets(config, data)
    num_classes = data.num_classes
    label = labeler(config, net, num_classes, options)
    confusion = np.zeros((num_classes, num_classes), np.int64)
    write_class_file(out_dir, data)

    todo = [(data.train, int(i), True) for i in labeled]
    todo += [(data.train, int(i), False) for i in image_labeled]
    for source, ix, _, _ in input_pipeline.tagged_unlabeled(data):
        todo += [(source, int(i), False) for i in ix]
    start = time.perf_counter()
    for k, (source, i, has_labels) in enumerate(todo):
        example = source[i]
        ident = ident_of(example)
        image, mask = image_and_mask(example)
        if has_labels:
            out = mask
        else:
            tags = data.tags.get(ident)
            known = tags if tags is not None else input_pipeline.classes_from_mask(mask, num_classes)
            out = label(image, known).astype(np.uint8)
            confusion += np.asarray(metrics.confusion_matrix(mask, out, num_classes))
        write_png(os.path.join(out_dir, "images", ident + ".png"), image)
        write_png(os.path.join(out_dir, "masks", ident + ".png"), out)
        if progress and (k + 1) % 100 == 0:
            elapsed = time.perf_counter() - start
            eta = elapsed / (k + 1) * (len(todo) - k - 1)
            print(f"  pseudo labels: {k + 1}/{len(todo)} images, ETA {format_seconds(eta)}", flush=True)
    write_split(data.validation, out_dir, "val")

    scores = metrics.segmentation_metrics(confusion) if confusion.sum() else None
    summary = {
        "pixel_labeled": len(labeled),
        "pseudo_labeled": len(todo) - len(labeled),
        "validation": len(data.validation),
        "class_names": list(data.class_names),
    }
    if scores is not None:
        summary.update(
            accuracy=float(scores["pixel_accuracy"]),
            miou=float(scores["miou"]),
            iou=[float(v) for v in scores["iou"]],
        )
    with open(os.path.join(out_dir, SUMMARY_FILE), "w") as f:
        json.dump(summary, f, indent=1)
    return summary
