"""Losses against NumPy references on random logits with ignored pixels."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cps_jax import losses

C = 5


def np_log_softmax(x):
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def np_cross_entropy(logits, labels):
    """Loop-free but independent: mean over pixels whose label is in [0, C)."""
    logp = np_log_softmax(logits.astype(np.float64))
    flat_logp, flat_y = logp.reshape(-1, logits.shape[-1]), labels.reshape(-1)
    valid = (flat_y >= 0) & (flat_y < logits.shape[-1])
    picked = [-flat_logp[i, flat_y[i]] for i in np.nonzero(valid)[0]]
    return np.mean(picked) if picked else 0.0


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    logits_a = rng.normal(size=(2, 6, 7, C)).astype(np.float32) * 3
    logits_b = rng.normal(size=(2, 6, 7, C)).astype(np.float32) * 3
    labels = rng.integers(0, C, size=(2, 6, 7))
    labels[rng.random(labels.shape) < 0.3] = 255
    return logits_a, logits_b, labels


def test_cross_entropy_matches_numpy_with_ignored_pixels(data):
    logits, _, labels = data
    np.testing.assert_allclose(
        losses.cross_entropy(logits, labels), np_cross_entropy(logits, labels), rtol=1e-5
    )


def test_cross_entropy_all_ignored_is_zero_not_nan(data):
    logits, _, labels = data
    assert float(losses.cross_entropy(logits, np.full_like(labels, 255))) == 0.0


def test_cps_loss_matches_numpy(data):
    a, b, _ = data
    expected = np_cross_entropy(a, b.argmax(-1)) + np_cross_entropy(b, a.argmax(-1))
    np.testing.assert_allclose(losses.cps_loss(a, b), expected, rtol=1e-5)


def test_no_gradient_flows_into_pseudo_label_targets(data):
    a, b, _ = data
    grad_a, grad_b = jax.grad(losses.cps_loss, argnums=(0, 1))(a, b)
    # Each net's gradient comes only from its own prediction term; the other net's argmax is a constant.
    own_a = jax.grad(lambda x: losses.cross_entropy(x, jnp.argmax(b, -1)))(a)
    own_b = jax.grad(lambda x: losses.cross_entropy(x, jnp.argmax(a, -1)))(b)
    np.testing.assert_allclose(grad_a, own_a, atol=1e-7)
    np.testing.assert_allclose(grad_b, own_b, atol=1e-7)


def test_cross_entropy_gradient_matches_softmax_minus_onehot(data):
    logits, _, labels = data
    grad = np.asarray(jax.grad(losses.cross_entropy)(logits, labels))
    valid = labels != 255
    p = np.exp(np_log_softmax(logits.astype(np.float64)))
    onehot = np.eye(C)[np.where(valid, labels, 0)]
    expected = (p - onehot) * valid[..., None] / valid.sum()
    np.testing.assert_allclose(grad, expected, atol=1e-6)


def test_ohem_keeps_hard_pixels_on_hand_made_case():
    # Four pixels, true class 0; probabilities of the true class 0.9, 0.6, 0.2, 0.95 (+ one ignored).
    p_true = np.array([0.9, 0.6, 0.2, 0.95, 0.5])
    logits = np.log(np.stack([p_true, 1 - p_true], -1)).reshape(1, 1, 5, 2).astype(np.float32)
    labels = np.array([[[0, 0, 0, 0, 255]]])
    nll = -np.log(p_true[:4])
    # threshold 0.7, min_kept 1: k-th smallest = 0.2 -> keep p <= 0.7: pixels 1, 2.
    got = losses.ohem_cross_entropy(logits, labels, threshold=0.7, min_kept=1)
    np.testing.assert_allclose(got, nll[[1, 2]].mean(), rtol=1e-5)
    # min_kept 3: 3rd smallest = 0.9 -> keep p <= 0.9: pixels 0, 1, 2.
    got = losses.ohem_cross_entropy(logits, labels, threshold=0.7, min_kept=3)
    np.testing.assert_allclose(got, nll[[0, 1, 2]].mean(), rtol=1e-5)


def test_probability_mse_and_cpc_match_numpy(data):
    a, b, _ = data
    pa, pb = (
        np.exp(np_log_softmax(a.astype(np.float64))),
        np.exp(np_log_softmax(b.astype(np.float64))),
    )
    np.testing.assert_allclose(
        losses.probability_mse(a, pb), ((pa - pb) ** 2).sum(-1).mean(), rtol=1e-5
    )
    np.testing.assert_allclose(
        losses.cpc_loss(a, b), 2 * ((pa - pb) ** 2).sum(-1).mean(), rtol=1e-5
    )
    # The target side gets no gradient: d/db of mse(a, softmax(b)) is zero.
    grad_b = jax.grad(lambda x: losses.probability_mse(a, jax.nn.softmax(x)))(b)
    np.testing.assert_array_equal(grad_b, np.zeros_like(b))
