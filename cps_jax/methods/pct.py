"""A few pixel labels plus many image-level labels: progressive cross training (PCT) and the
supervised baseline that uses image labels (Wang, Zhang, Kan, Shan, "Learning pseudo labels for
semi-and-weakly supervised semantic segmentation", Pattern Recognition 132, 2022).

Every image of the "w" stream carries the list of classes present (`classes_w`); the softmax of
the class-aware cross-entropy (CCE, losses.class_aware_cross_entropy) is restricted to them.

`pct`: a hybrid net H ("left", the run's result and the net stage 2 pseudo-labels with) and a
pseudo net P ("right"), one architecture, no shared weights, see the same batch of pixel-labeled
images (l) and images with image-level labels (w), as the authors' code, which draws the w half
from every image with a label of either kind and takes the ground truth where a mask exists:

    L = L_seg + L_cls + L_h2p + L_p2h
    L_seg  CCE of H on the pixel labels;
    L_cls  multi-label soft-margin loss of H's logits, max-pooled over the image, on the w half
           (the classes of `pct.cls_skip`, e.g. VOC's background, left out);
    L_h2p  CCE of P against H's class-masked argmax on the w half (ground truth where given);
    L_p2h  the mean over the w half's pixels of w_i · CCE(H, P's class-masked argmax), with
           w_i = (min over the classes of image i of IoU_c)^score_power,

where IoU_c comes from momentum counts of P's predictions on the pixel-labeled half ("dynamic
evaluation"), kept in the train state (so they are checkpointed):

    T_c ← m·T_c + #truth c,  P_c ← m·P_c + #predicted c,  TP_c ← m·TP_c + #both c
    IoU_c = TP_c / (T_c + P_c − TP_c),   T = 1, P = TP = 0 at the start (IoU 0: no weight).

Two choices where the authors' code differs: their P_c also counts P's predictions on ignored
pixels (crop padding, VOC boundaries); here only pixels with a label count. Their weight treats a
present class of IoU exactly 0 as 1; here it is 0, as the formula says, so L_p2h waits until P's
predictions on the labeled half are worth something.

`supervised_tags`: one net, L_seg + L_cls (the image labels through the classification loss
only); the baseline PCT must beat with the same labels.
"""

import jax
import jax.numpy as jnp
import numpy as np

from cps_jax import losses, pseudo_labels
from cps_jax.methods.base import Aux, Method, register


# --- dynamic evaluation ---------------------------------------------------------------------


def initial_counts(num_classes: int) -> dict:
    return {
        "truth": jnp.ones(num_classes, jnp.float32),
        "predicted": jnp.zeros(num_classes, jnp.float32),
        "true_positive": jnp.zeros(num_classes, jnp.float32),
    }


def update_counts(counts: dict, predicted, truth, momentum: float) -> dict:
    """The momentum counts after one batch: `predicted` and `truth` [N,H,W] class maps, only the
    pixels whose truth is a class count."""
    num_classes = counts["truth"].shape[0]
    valid = (truth >= 0) & (truth < num_classes)

    def histogram(labels, where):
        labels = jnp.where(where, labels, num_classes).reshape(-1)
        return jnp.bincount(labels, length=num_classes + 1)[:num_classes].astype(jnp.float32)

    new = {
        "truth": histogram(truth, valid),
        "predicted": histogram(predicted, valid),
        "true_positive": histogram(truth, valid & (predicted == truth)),
    }
    return {k: momentum * counts[k] + new[k] for k in counts}


def counts_iou(counts: dict) -> jax.Array:
    """IoU_c = TP_c / (T_c + P_c − TP_c) of the momentum counts."""
    union = counts["truth"] + counts["predicted"] - counts["true_positive"]
    return counts["true_positive"] / jnp.maximum(union, 1e-12)


def image_weights(iou, classes, power: float) -> jax.Array:
    """w_i = (min over the classes present in image i of IoU_c)^power; 1 for an image without
    any class known."""
    present = jnp.asarray(classes).astype(bool)
    lowest = jnp.min(jnp.where(present, iou[None, :], jnp.inf), axis=-1)
    return jnp.where(present.any(-1), lowest, 1.0) ** power


# --- losses ---------------------------------------------------------------------------------


def _foreground(config, num_classes: int) -> np.ndarray:
    """Which classes L_cls scores (static): all but the indices of `pct.cls_skip`."""
    skip = tuple(config.pct.cls_skip)
    if any(not 0 <= int(c) < num_classes for c in skip):
        raise ValueError(f"config.pct.cls_skip: expected class indices in [0, {num_classes}), got {skip}")
    keep = np.ones(num_classes, bool)
    keep[list(skip)] = False
    return keep


def classification_loss(logits, classes, foreground) -> jax.Array:
    """L_cls: multi-label soft margin of the image-max-pooled logits, on the `foreground` classes."""
    pooled = jnp.max(losses.at_least_f32(logits), axis=(1, 2))
    return losses.multilabel_soft_margin(pooled[:, foreground], jnp.asarray(classes)[:, foreground])


def with_truth(batch, stream: str, labels):
    """Pseudo labels for the images of `stream`, replaced by the mask in pixel-labeled ones (the
    only images whose mask a loss may read)."""
    return jnp.where(batch[f"pixel_{stream}"][:, None, None], batch[f"mask_{stream}"], labels)


def pct_loss(tools, config):
    momentum, power = float(config.pct.score_momentum), float(config.pct.score_power)
    if not 0.0 <= momentum < 1.0:
        raise ValueError(f"config.pct.score_momentum must be in [0, 1), got {momentum}")
    plain = pseudo_labels.Options()

    def loss(params, stats, frozen, extra, batch, draws, step):
        n = batch["image_l"].shape[0]
        images = jnp.concatenate([batch["image_l"], batch["image_w"]])  # one forward, as the authors
        logits, new_stats = {}, {}
        for net in ("left", "right"):
            (logits[net],), new_stats[net] = tools.run(params[net], stats[net], [images], train=True)
        hybrid_l, hybrid_w = logits["left"][:n], logits["left"][n:]
        pseudo_l, pseudo_w = logits["right"][:n], logits["right"][n:]
        tags_l, tags_w = batch["classes_l"], batch["classes_w"]
        foreground = _foreground(config, hybrid_w.shape[-1])

        seg = losses.class_aware_cross_entropy(hybrid_l, batch["mask_l"], tags_l)
        cls = classification_loss(hybrid_w, tags_w, foreground)
        from_hybrid = pseudo_labels.select(hybrid_w, plain, classes=tags_w)
        h2p = losses.class_aware_cross_entropy(
            pseudo_w, with_truth(batch, "w", from_hybrid.labels), tags_w
        )
        counts = update_counts(
            extra["counts"],
            pseudo_labels.class_masked_argmax(pseudo_l, tags_l),
            batch["mask_l"],
            momentum,
        )
        iou = counts_iou(counts)
        from_pseudo = pseudo_labels.select(pseudo_w, plain, classes=tags_w)
        weights = image_weights(iou, tags_w, power)
        nll, _ = losses.class_aware_pixel_nll(hybrid_w, with_truth(batch, "w", from_pseudo.labels), tags_w)
        p2h = jnp.mean(weights[:, None, None] * nll)
        total = seg + cls + h2p + p2h
        metrics = dict(
            loss=total, sup_left=seg, cls=cls, h2p=h2p, p2h=p2h,
            image_weight=weights.mean(), pseudo_net_miou=iou.mean(),
        )  # fmt: skip
        return total, Aux(metrics, new_stats, {**extra, "counts": counts}, [from_hybrid, from_pseudo])

    return loss


def supervised_tags_loss(tools, config):
    def loss(params, stats, frozen, extra, batch, draws, step):
        n = batch["image_l"].shape[0]
        images = jnp.concatenate([batch["image_l"], batch["image_w"]])
        (logits,), new_stats = tools.run(params["left"], stats["left"], [images], train=True)
        seg = losses.class_aware_cross_entropy(logits[:n], batch["mask_l"], batch["classes_l"])
        cls = classification_loss(logits[n:], batch["classes_w"], _foreground(config, logits.shape[-1]))
        total = seg + cls
        return total, Aux(dict(loss=total, sup_left=seg, cls=cls), {"left": new_stats}, extra, [])

    return loss


PCT = register(
    Method(
        "pct",
        nets=("left", "right"),
        trained=("left", "right"),
        streams=("l", "w"),
        make_loss=pct_loss,
        initial_extra=lambda config, num_classes: {"counts": initial_counts(num_classes)},
        pseudo_stream="w",
    )
)
SUPERVISED_TAGS = register(
    Method(
        "supervised_tags",
        nets=("left",),
        trained=("left",),
        streams=("l", "w"),
        make_loss=supervised_tags_loss,
    )
)
