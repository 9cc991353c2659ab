"""Segmentation losses: cross-entropy with an ignore label, and cross pseudo supervision.

All losses take logits [N, H, W, C] and integer labels [N, H, W]; computation is in float32 (or
float64 for float64 inputs).
"""

import jax
import jax.numpy as jnp


def at_least_f32(x: jax.Array) -> jax.Array:
    """float32 for bfloat16 / float16 inputs; float64 stays float64 (exact parity tests)."""
    return x.astype(jnp.promote_types(x.dtype, jnp.float32))


def pixel_cross_entropy(logits: jax.Array, labels: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Per-pixel cross-entropy and a validity mask (labels outside [0, C) are ignored)."""
    logits = at_least_f32(logits)
    num_classes = logits.shape[-1]
    valid = (labels >= 0) & (labels < num_classes)
    safe = jnp.where(valid, labels, 0)
    log_probs = jax.nn.log_softmax(logits, axis=-1)
    # A one-hot select, not take_along_axis: it fuses with the softmax, and its gradient is a
    # select too (take_along_axis differentiates into a scatter, slow on CPU and GPU alike).
    classes = jax.lax.broadcasted_iota(jnp.int32, log_probs.shape, log_probs.ndim - 1)
    nll = -jnp.sum(jnp.where(classes == safe[..., None], log_probs, 0.0), axis=-1)
    return jnp.where(valid, nll, 0.0), valid


def cross_entropy(
    logits: jax.Array, labels: jax.Array, weights: jax.Array | None = None
) -> jax.Array:
    """Mean cross-entropy over valid pixels (label 255, or any label outside [0, C), is ignored).

    `weights` [N, H, W] scale each pixel's term (pseudo labels a threshold dropped get 0); the mean
    is still over all valid pixels. Returns 0 when no pixel is valid, rather than NaN.
    """
    nll, valid = pixel_cross_entropy(logits, labels)
    if weights is not None:
        nll = nll * weights
    return nll.sum() / jnp.maximum(valid.sum(), 1)


def ohem_cross_entropy(
    logits: jax.Array, labels: jax.Array, *, threshold: float = 0.7, min_kept: int = 50_000
) -> jax.Array:
    """Online hard example mining CE (as the reference uses for Cityscapes).

    Keeps valid pixels whose true-class probability is <= max(threshold, k-th smallest such probability),
    k = min_kept, and averages the CE over them.
    """
    nll, valid = pixel_cross_entropy(logits, labels)
    prob = jnp.where(valid, jnp.exp(-nll), jnp.inf).reshape(-1)
    k = min(int(min_kept), prob.size)
    # k-th smallest true-class probability among valid pixels (inf pads the invalid ones).
    kth = -jax.lax.top_k(-prob, k)[0][-1] if k > 0 else jnp.asarray(0.0)
    kth = jnp.where(jnp.isfinite(kth), kth, jnp.max(jnp.where(valid, jnp.exp(-nll), 0.0)))
    keep = valid.reshape(-1) & (prob <= jnp.maximum(threshold, kth))
    return jnp.sum(jnp.where(keep, nll.reshape(-1), 0.0)) / jnp.maximum(keep.sum(), 1)


def pseudo_labels(logits: jax.Array) -> jax.Array:
    """Hard pseudo labels: argmax of logits with no gradient path back into them."""
    return jnp.argmax(jax.lax.stop_gradient(logits), axis=-1).astype(jnp.int32)


def cps_loss(left_logits: jax.Array, right_logits: jax.Array) -> jax.Array:
    """Cross pseudo supervision: each net is trained on the other's one-hot argmax prediction.

    CE(left, argmax right) + CE(right, argmax left), each a mean over all pixels. Targets are computed
    under stop_gradient, so each term only trains the net whose logits come first.
    """
    return cross_entropy(left_logits, pseudo_labels(right_logits)) + cross_entropy(
        right_logits, pseudo_labels(left_logits)
    )


def probability_mse(logits: jax.Array, target_probs: jax.Array) -> jax.Array:
    """Squared distance between softmax(logits) and fixed target probabilities: summed over classes,
    averaged over pixels (Mean Teacher / CutMix-Seg consistency). The target carries no gradient."""
    probs = jax.nn.softmax(at_least_f32(logits), axis=-1)
    target = jax.lax.stop_gradient(at_least_f32(target_probs))
    return jnp.mean(jnp.sum(jnp.square(probs - target), axis=-1))


def cpc_loss(left_logits: jax.Array, right_logits: jax.Array) -> jax.Array:
    """Cross probability consistency (CCT-style ablation of CPS): each net is pulled towards the
    other's probabilities instead of its hard pseudo labels."""
    return probability_mse(left_logits, jax.nn.softmax(at_least_f32(right_logits))) + (
        probability_mse(right_logits, jax.nn.softmax(at_least_f32(left_logits)))
    )


# --- image-level labels (semi- and weakly supervised training, cps_jax/methods/pct.py) ----------


def present_classes(classes: jax.Array, num_classes: int) -> jax.Array:
    """`classes` [N, C] multi-hot of the classes present in each image, as bool; an image whose
    vector is all zero (nothing known) counts as "every class may be present"."""
    present = jnp.asarray(classes).astype(bool)
    if present.shape[-1] != num_classes:
        raise ValueError(f"classes: expected [N, {num_classes}], got shape {present.shape}")
    return present | ~present.any(-1, keepdims=True)


def class_aware_log_softmax(logits: jax.Array, classes: jax.Array) -> jax.Array:
    """log p̃ with p̃_c = y_c·exp(f_c) / Σ_k y_k·exp(f_k): the softmax restricted to the classes
    `classes` [N, C] says each image holds; absent classes get log 0 = -inf."""
    logits = at_least_f32(logits)
    present = present_classes(classes, logits.shape[-1])[:, None, None, :]
    return jax.nn.log_softmax(jnp.where(present, logits, -jnp.inf), axis=-1)


def class_aware_pixel_nll(logits, labels, classes) -> tuple[jax.Array, jax.Array]:
    """Per-pixel NLL of the class-aware softmax, and the validity mask. A label outside [0, C),
    or of a class the image's `classes` say is absent (no finite loss exists), is ignored."""
    log_probs = class_aware_log_softmax(logits, classes)
    num_classes = log_probs.shape[-1]
    present = present_classes(classes, num_classes)
    in_range = (labels >= 0) & (labels < num_classes)
    safe = jnp.where(in_range, labels, 0)
    index = jax.lax.broadcasted_iota(jnp.int32, log_probs.shape, log_probs.ndim - 1)
    chosen = index == safe[..., None]
    valid = in_range & jnp.any(chosen & present[:, None, None, :], axis=-1)
    nll = -jnp.sum(jnp.where(chosen & valid[..., None], log_probs, 0.0), axis=-1)
    return nll, valid


def class_aware_cross_entropy(logits, labels, classes, weights=None) -> jax.Array:
    """Class-aware cross-entropy (CCE; Wang et al., Pattern Recognition 2022): the NLL of the
    softmax restricted to the classes present, a mean over valid pixels (see
    class_aware_pixel_nll); `weights` [N, H, W] scale each pixel's term. With every class
    present it is `cross_entropy`."""
    nll, valid = class_aware_pixel_nll(logits, labels, classes)
    if weights is not None:
        nll = nll * weights
    return nll.sum() / jnp.maximum(valid.sum(), 1)


def multilabel_soft_margin(scores: jax.Array, targets: jax.Array) -> jax.Array:
    """Multi-label soft-margin loss (PyTorch's multilabel_soft_margin_loss): per image
    -1/C Σ_c [y_c log σ(x_c) + (1 - y_c) log σ(-x_c)], averaged over images. scores, targets
    [N, C]."""
    scores = at_least_f32(scores)
    targets = jnp.asarray(targets, scores.dtype)
    per_class = targets * jax.nn.log_sigmoid(scores) + (1 - targets) * jax.nn.log_sigmoid(-scores)
    return -jnp.mean(per_class)
