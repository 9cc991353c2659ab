"""Pseudo labels: how one net's prediction becomes another net's target, the remedies for
confirmation bias, and live diagnostics of what the targets are worth.

The reference takes the plain argmax of the other net. Where a net is unsure, that argmax is the
class it has seen most, so the targets teach "unsure pixel -> majority class" and the classes a
net barely knows are erased. `config.pseudo` (all off by default, as the reference) acts on that:

  threshold   keep only pixels whose confidence (max probability) is >= threshold.
  balance     "none"; "cbst": per class, keep the `cbst_keep` share of the pixels predicted as that
              class with the highest confidence (class-balanced self-training, Zou et al. 2018:
              the threshold of class c is the confidence at the top-`cbst_keep` quantile of c's
              pixels), so unsure majority-class pixels are dropped while every class keeps targets;
              "align": distribution alignment (DARS, He et al. 2021, in the form of ReMixMatch's
              alignment): the probabilities are multiplied by (labeled class share / this net's
              running mean probability on unlabeled pixels) and renormalised before the argmax, so
              classes the net under-predicts relative to the labeled set win their unsure pixels.
  class_mask  with image-level labels (the `classes` of each image, all classes where unknown):
              the argmax picks only among the classes the image holds (class-masked argmax).
Dropped pixels get weight 0; the cross term stays a mean over all pixels, so it shrinks with the
share kept (FixMatch / UniMatch convention).

Everything is a pure function of arrays, jitted inside the train step.
"""

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from cps_jax import losses, metrics

BALANCES = ("none", "cbst", "align")


@dataclasses.dataclass(frozen=True)
class Options:
    threshold: float = 0.0
    balance: str = "none"
    cbst_keep: float = 0.5
    align_momentum: float = 0.99
    # Restrict each image's targets to the classes its image-level labels name (where known).
    class_mask: bool = False

    @classmethod
    def from_config(cls, pseudo_config) -> "Options":
        options = cls(
            threshold=float(pseudo_config.threshold),
            balance=str(pseudo_config.balance),
            cbst_keep=float(pseudo_config.cbst_keep),
            align_momentum=float(pseudo_config.align_momentum),
            class_mask=bool(pseudo_config.class_mask),
        )
        if options.balance not in BALANCES:
            raise ValueError(
                f"config.pseudo.balance must be one of {BALANCES}, got {options.balance!r}"
            )
        if not 0.0 <= options.threshold < 1.0:
            raise ValueError(f"config.pseudo.threshold must be in [0, 1), got {options.threshold}")
        if not 0.0 < options.cbst_keep <= 1.0:
            raise ValueError(f"config.pseudo.cbst_keep must be in (0, 1], got {options.cbst_keep}")
        if not 0.0 <= options.align_momentum < 1.0:
            raise ValueError(
                f"config.pseudo.align_momentum must be in [0, 1), got {options.align_momentum}"
            )
        return options

    @property
    def is_plain(self) -> bool:
        """The reference's argmax, every pixel kept."""
        return self.threshold == 0.0 and self.balance == "none"


class Pseudo(NamedTuple):
    """Targets for one batch: labels [N,H,W] int32, confidence [N,H,W], weight [N,H,W] in {0, 1}."""

    labels: jax.Array
    confidence: jax.Array
    weight: jax.Array


def align(probs: jax.Array, target_share: jax.Array, predicted_share: jax.Array) -> jax.Array:
    """probs * target / predicted, renormalised over classes (the last axis)."""
    ratio = target_share / jnp.maximum(predicted_share, 1e-6)
    scaled = probs * ratio
    return scaled / jnp.maximum(scaled.sum(-1, keepdims=True), 1e-12)


def class_balanced_keep(labels: jax.Array, confidence: jax.Array, num_classes: int, keep: float):
    """Per class, True for the ceil(keep * n_c) most confident of the n_c pixels labeled c."""
    flat_labels, flat_conf = labels.reshape(-1), confidence.reshape(-1)
    # One sort orders pixels by class, most confident first within each class.
    order = jnp.lexsort((-flat_conf, flat_labels))
    counts = jnp.bincount(flat_labels, length=num_classes)
    starts = jnp.cumsum(counts) - counts
    sorted_labels = flat_labels[order]
    rank = jnp.arange(flat_labels.size) - starts[sorted_labels]
    kept_sorted = rank < jnp.ceil(keep * counts[sorted_labels])
    kept = jnp.zeros(flat_labels.size, bool).at[order].set(kept_sorted)
    return kept.reshape(labels.shape)


def class_masked(logits: jax.Array, classes: jax.Array | None, fill=-jnp.inf) -> jax.Array:
    """`logits` with the classes `classes` [N, C] says are absent from each image set to `fill`,
    so that an argmax or softmax picks only among the image's classes (None: unchanged). A
    finite `fill` (the dtype's lowest) keeps logits that CutMix blends free of inf * 0."""
    if classes is None:
        return logits
    present = losses.present_classes(classes, logits.shape[-1])[:, None, None, :]
    return jnp.where(present, logits, fill)


def class_masked_argmax(logits: jax.Array, classes: jax.Array) -> jax.Array:
    """Per pixel, the most likely of the classes present in the image (image-level labels)."""
    masked = class_masked(losses.at_least_f32(jax.lax.stop_gradient(logits)), classes)
    return jnp.argmax(masked, axis=-1).astype(jnp.int32)


def select(
    logits: jax.Array, options: Options, prior: dict | None = None, classes=None
) -> Pseudo:
    """Hard targets from `logits` [N,H,W,C], without gradient. `prior` ({"labeled", "predicted"}
    class shares) is used by balance="align"; `classes` [N, C] (image-level labels), if given,
    restricts each image's targets to its classes."""
    logits = class_masked(losses.at_least_f32(jax.lax.stop_gradient(logits)), classes)
    probs = jax.nn.softmax(logits, axis=-1)
    if options.balance == "align":
        probs = align(probs, prior["labeled"], prior["predicted"])
        labels = jnp.argmax(probs, axis=-1).astype(jnp.int32)
    else:  # the argmax of the logits themselves, as the reference (exact where softmax ties)
        labels = jnp.argmax(logits, axis=-1).astype(jnp.int32)
    confidence = jnp.max(probs, axis=-1)
    keep = jnp.ones(labels.shape, bool)
    if options.threshold > 0:
        keep &= confidence >= options.threshold
    if options.balance == "cbst":
        keep &= class_balanced_keep(labels, confidence, logits.shape[-1], options.cbst_keep)
    return Pseudo(labels=labels, confidence=confidence, weight=keep.astype(jnp.float32))


# --- running class shares for balance="align", kept in the train state -------------------------


def from_probabilities(probs: jax.Array) -> Pseudo:
    """Soft targets [N,H,W,C] seen as hard labels (argmax, its probability, every pixel kept)."""
    return Pseudo(
        labels=jnp.argmax(probs, -1).astype(jnp.int32),
        confidence=jnp.max(probs, -1),
        weight=jnp.ones(probs.shape[:-1], jnp.float32),
    )


def initial_prior(num_classes: int) -> dict:
    uniform = jnp.full((num_classes,), 1.0 / num_classes, jnp.float32)
    return {"labeled": uniform, "predicted": uniform}


def label_share(labels: jax.Array, num_classes: int) -> jax.Array:
    """Share of each class among the valid pixels of `labels` (uniform if none is valid)."""
    valid = (labels >= 0) & (labels < num_classes)
    counts = jnp.bincount(
        jnp.where(valid, labels, 0).reshape(-1),
        weights=valid.reshape(-1).astype(jnp.float32),
        length=num_classes,
    )
    total = counts.sum()
    return jnp.where(total > 0, counts / jnp.maximum(total, 1.0), 1.0 / num_classes)


def update_prior(prior: dict, labels: jax.Array, logits: jax.Array, momentum: float) -> dict:
    """EMA of the labeled class shares (from a labeled batch's masks) and of a net's mean
    probability over unlabeled pixels (`logits`, no gradient)."""
    num_classes = logits.shape[-1]
    probs = jax.nn.softmax(losses.at_least_f32(jax.lax.stop_gradient(logits)), axis=-1)
    mean_probs = probs.reshape(-1, num_classes).mean(0)
    ema = lambda old, new: momentum * old + (1.0 - momentum) * new
    return {
        "labeled": ema(prior["labeled"], label_share(labels, num_classes)),
        "predicted": ema(prior["predicted"], mean_probs),
    }


# --- diagnostics against the hidden masks of the unlabeled stream ------------------------------


def diagnostic_counts(pseudo: list[Pseudo], truth: jax.Array, num_classes: int) -> dict:
    """Sums over the given nets' targets (each [N,H,W]) against the hidden masks `truth`, to be
    added up between log steps and turned into rates by `summarize`. Pixels without a valid
    hidden label (255, or images that have no mask) count only towards agreement and confidence."""
    valid = ((truth >= 0) & (truth < num_classes)).astype(jnp.float32)
    counts = {
        "confusion": sum(metrics.confusion_matrix(truth, p.labels, num_classes) for p in pseudo),
        "confusion_kept": sum(
            metrics.confusion_matrix(truth, p.labels, num_classes, weights=p.weight)
            for p in pseudo
        ),
        "pixels": jnp.asarray(sum(p.labels.size for p in pseudo), jnp.float32),
        "kept": sum(p.weight.sum() for p in pseudo),
        "confidence": sum(p.confidence.sum() for p in pseudo),
        "masked_pixels": valid.sum() * len(pseudo),
    }
    if len(pseudo) == 2:
        counts["agree"] = jnp.sum(pseudo[0].labels == pseudo[1].labels).astype(jnp.float32)
        counts["pair_pixels"] = jnp.asarray(pseudo[0].labels.size, jnp.float32)
    return counts


def summarize(counts: dict, class_names) -> dict:
    """Host side: rates from summed `diagnostic_counts`.

    accuracy / miou: pseudo labels against the hidden masks (all pixels); kept_accuracy: over kept
    pixels; share/<class>: the class's share of the pseudo labels, true_share/<class>: its share of
    the hidden masks (the collapse detector: a share far above its true share eats the others);
    agreement of the two nets' targets; mean confidence; kept: share of pixels any threshold kept.
    """
    counts = {k: np.asarray(v, np.float64) for k, v in counts.items()}
    confusion, kept_conf = counts["confusion"], counts["confusion_kept"]
    scores = metrics.segmentation_metrics(confusion)
    out = {
        "accuracy": scores["pixel_accuracy"],
        "miou": scores["miou"],
        "kept_accuracy": metrics.segmentation_metrics(kept_conf)["pixel_accuracy"],
        "kept": counts["kept"] / max(counts["pixels"], 1.0),
        "confidence": counts["confidence"] / max(counts["pixels"], 1.0),
    }
    if "agree" in counts:
        out["agreement"] = counts["agree"] / max(counts["pair_pixels"], 1.0)
    labeled = max(confusion.sum(), 1.0)
    for c, name in enumerate(class_names):
        out[f"share/{name}"] = confusion[:, c].sum() / labeled
        out[f"true_share/{name}"] = confusion[c].sum() / labeled
        out[f"iou/{name}"] = float(scores["iou"][c])
    return out


def console_line(summary: dict, class_names) -> str:
    """One line: the rates, then each class's pseudo share (true share)."""
    head = " ".join(
        f"{key}={100 * summary[key]:.1f}"
        for key in ("accuracy", "miou", "kept_accuracy", "agreement", "confidence", "kept")
        if key in summary
    )
    shares = " ".join(
        f"{name} {100 * summary[f'share/{name}']:.1f}({100 * summary[f'true_share/{name}']:.1f})"
        for name in class_names
    )
    return f"pseudo labels (%): {head} | share(true): {shares}"


def per_class_table(summary: dict, class_names) -> str:
    """Markdown: per class, its true share, pseudo-label share and pseudo-label IoU."""
    lines = [
        "| class | true share | pseudo share | pseudo IoU |",
        "|---|---|---|---|",
    ]
    for name in class_names:
        iou = summary[f"iou/{name}"]
        lines.append(
            f"| {name} | {100 * summary[f'true_share/{name}']:.2f} | "
            f"{100 * summary[f'share/{name}']:.2f} | "
            + (f"{100 * iou:.2f}" if np.isfinite(iou) else "-")
            + " |"
        )
    lines.append(
        f"| **all** | | kept {100 * summary['kept']:.1f}% | "
        f"acc {100 * summary['accuracy']:.2f}, mIoU {100 * summary['miou']:.2f} |"
    )
    return "\n".join(lines)
