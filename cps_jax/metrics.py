"""Segmentation metrics from a confusion matrix summed over a whole data set."""

import jax
import jax.numpy as jnp
import numpy as np


def confusion_matrix(
    labels: jax.Array, predictions: jax.Array, num_classes: int, weights: jax.Array | None = None
) -> jax.Array:
    """[C, C] int32 counts, rows = ground truth, columns = prediction.

    Pixels with a label outside [0, C) (e.g. 255) are skipped; `weights` (broadcastable to labels, 0 or 1)
    masks out whole padded examples.
    """
    labels = labels.astype(jnp.int32)
    valid = (labels >= 0) & (labels < num_classes)
    if weights is not None:
        valid &= jnp.broadcast_to(weights, labels.shape).astype(bool)
    index = jnp.where(valid, labels * num_classes + predictions.astype(jnp.int32), 0)
    counts = jnp.bincount(
        index.reshape(-1),
        weights=valid.reshape(-1).astype(jnp.int32),
        length=num_classes * num_classes,
    )
    return counts.reshape(num_classes, num_classes).astype(jnp.int32)


def segmentation_metrics(confusion: np.ndarray) -> dict:
    """Per-class IoU, mIoU over classes present (in ground truth or prediction), pixel accuracy."""
    confusion = np.asarray(confusion, dtype=np.float64)
    true_positive = np.diag(confusion)
    union = confusion.sum(0) + confusion.sum(1) - true_positive
    present = union > 0
    iou = np.where(present, true_positive / np.maximum(union, 1), np.nan)
    labeled = confusion.sum()
    return {
        "iou": iou,
        "miou": float(np.nanmean(iou)) if present.any() else float("nan"),
        "pixel_accuracy": float(true_positive.sum() / labeled) if labeled else float("nan"),
    }
