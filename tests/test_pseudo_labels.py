"""Pseudo-label remedies and diagnostics, against hand computations and NumPy."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from cps_jax import losses, pseudo_labels
from cps_jax.pseudo_labels import Options
from cps_jax.methods.cross_term import cps_weight_schedule
from cps_jax.methods.terms import sigmoid_rampup


def logits_of(probs):
    """Logits whose softmax is `probs`."""
    return jnp.log(jnp.asarray(probs, jnp.float32))


def test_class_balanced_keep_keeps_each_classes_most_confident_share():
    labels = jnp.array([[0, 0, 0, 0, 1, 1, 2]])
    confidence = jnp.array([[0.6, 0.9, 0.7, 0.8, 0.4, 0.5, 0.3]])
    kept = pseudo_labels.class_balanced_keep(labels, confidence, 3, keep=0.5)
    # class 0: the 2 most confident of 4 (0.9, 0.8); class 1: 1 of 2 (0.5); class 2: ceil(0.5) = 1.
    np.testing.assert_array_equal(kept, [[False, True, False, True, False, True, True]])


def test_select_plain_is_the_argmax_and_keeps_every_pixel():
    probs = np.array([[[[0.7, 0.2, 0.1], [0.2, 0.5, 0.3]]]])
    out = pseudo_labels.select(logits_of(probs), Options())
    np.testing.assert_array_equal(out.labels, [[[0, 1]]])
    np.testing.assert_allclose(out.confidence, [[[0.7, 0.5]]], rtol=1e-6)
    np.testing.assert_array_equal(out.weight, [[[1.0, 1.0]]])


def test_select_threshold_drops_unsure_pixels():
    probs = np.array([[[[0.7, 0.2, 0.1], [0.2, 0.5, 0.3], [0.05, 0.05, 0.9]]]])
    out = pseudo_labels.select(logits_of(probs), Options(threshold=0.6))
    np.testing.assert_array_equal(out.weight, [[[1.0, 0.0, 1.0]]])


def test_select_cbst_keeps_a_share_of_each_predicted_class():
    # Four pixels predicted 0 (confidences 0.9, 0.8, 0.7, 0.6) and two predicted 1 (0.6, 0.55).
    probs = np.array(
        [[[[0.9, 0.1], [0.8, 0.2], [0.7, 0.3], [0.6, 0.4], [0.4, 0.6], [0.45, 0.55]]]]
    )
    out = pseudo_labels.select(logits_of(probs), Options(balance="cbst", cbst_keep=0.5))
    np.testing.assert_array_equal(out.labels, [[[0, 0, 0, 0, 1, 1]]])
    np.testing.assert_array_equal(out.weight, [[[1, 1, 0, 0, 1, 0]]])
    # A global threshold of 0.65 would have dropped both class-1 pixels instead.
    plain = pseudo_labels.select(logits_of(probs), Options(threshold=0.65))
    np.testing.assert_array_equal(plain.weight, [[[1, 1, 1, 0, 0, 0]]])


def test_align_moves_unsure_pixels_to_the_under_predicted_class():
    probs = np.array([[[[0.55, 0.45], [0.9, 0.1]]]])
    # The labeled set is half class 1, but the net predicts class 1 for 20% of the mass.
    prior = {"labeled": jnp.array([0.5, 0.5]), "predicted": jnp.array([0.8, 0.2])}
    out = pseudo_labels.select(logits_of(probs), Options(balance="align"), prior)
    scaled = probs[0, 0] * np.array([0.5 / 0.8, 0.5 / 0.2])
    expected = scaled / scaled.sum(-1, keepdims=True)
    np.testing.assert_array_equal(out.labels, [[np.argmax(expected, -1)]])
    np.testing.assert_array_equal(out.labels, [[[1, 0]]])
    np.testing.assert_allclose(out.confidence[0, 0], expected.max(-1), rtol=1e-5)


def test_update_prior_is_an_ema_of_label_shares_and_mean_probabilities():
    labels = jnp.array([[0, 0, 1, 255]])
    probs = np.array([[[0.6, 0.4], [0.2, 0.8]]])
    prior = pseudo_labels.initial_prior(2)
    new = pseudo_labels.update_prior(prior, labels, logits_of(probs), momentum=0.9)
    np.testing.assert_allclose(new["labeled"], 0.9 * 0.5 + 0.1 * np.array([2 / 3, 1 / 3]), 1e-6)
    np.testing.assert_allclose(new["predicted"], 0.9 * 0.5 + 0.1 * np.array([0.4, 0.6]), 1e-6)


def test_weighted_cross_entropy_is_the_mean_over_valid_pixels_of_weighted_terms():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(2, 3, 4, 5)).astype(np.float32)
    labels = rng.integers(0, 5, (2, 3, 4))
    labels[0, 0, :2] = 255
    weights = rng.integers(0, 2, (2, 3, 4)).astype(np.float32)
    log_p = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    valid = labels != 255
    nll = -np.take_along_axis(log_p, np.where(valid, labels, 0)[..., None], -1)[..., 0]
    expected = (nll * weights * valid).sum() / valid.sum()
    got = losses.cross_entropy(jnp.asarray(logits), jnp.asarray(labels), jnp.asarray(weights))
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    # Weights of 1 are the plain mean.
    np.testing.assert_allclose(
        losses.cross_entropy(logits, labels, np.ones_like(weights)),
        losses.cross_entropy(logits, labels),
        rtol=1e-6,
    )


def test_diagnostics_against_numpy():
    rng = np.random.default_rng(1)
    c, shape = 4, (2, 5, 6)
    truth = rng.integers(0, c, shape)
    truth[0, 0] = 255
    nets = []
    for _ in range(2):
        nets.append(
            pseudo_labels.Pseudo(
                labels=jnp.asarray(rng.integers(0, c, shape), jnp.int32),
                confidence=jnp.asarray(rng.uniform(size=shape), jnp.float32),
                weight=jnp.asarray(rng.integers(0, 2, shape), jnp.float32),
            )
        )
    counts = pseudo_labels.diagnostic_counts(nets, jnp.asarray(truth), c)
    # Summed over two "steps", as the trainer does between log steps.
    summed = jax.tree.map(lambda a: a + a, counts)
    names = ["a", "b", "c", "d"]
    out = pseudo_labels.summarize(summed, names)
    valid = truth != 255
    labels = np.stack([np.asarray(p.labels) for p in nets])
    weight = np.stack([np.asarray(p.weight) for p in nets])
    correct = (labels == truth) & valid
    assert out["accuracy"] == pytest.approx(correct.sum() / (2 * valid.sum()))
    kept = (weight > 0) & valid
    assert out["kept_accuracy"] == pytest.approx((correct & kept).sum() / kept.sum())
    assert out["kept"] == pytest.approx(weight.mean())
    assert out["agreement"] == pytest.approx(np.mean(labels[0] == labels[1]))
    conf = np.stack([np.asarray(p.confidence) for p in nets])
    assert out["confidence"] == pytest.approx(conf.mean(), rel=1e-5)
    for k, name in enumerate(names):
        share = ((labels == k) & valid).sum() / (2 * valid.sum())
        true_share = ((truth == k) & valid).sum() / valid.sum()
        assert out[f"share/{name}"] == pytest.approx(share)
        assert out[f"true_share/{name}"] == pytest.approx(true_share)
        tp = ((labels == k) & (truth == k)).sum()
        union = ((labels == k) & valid).sum() + 2 * (truth == k).sum() - tp
        assert out[f"iou/{name}"] == pytest.approx(tp / union)
    line = pseudo_labels.console_line(out, names)
    assert line.startswith("pseudo labels (%): accuracy=") and "d " in line
    table = pseudo_labels.per_class_table(out, names)
    assert table.count("\n") == len(names) + 2


def test_cps_weight_schedule_warmup_then_sigmoid_rampup():
    config = ml_collections.ConfigDict(
        dict(cps_weight=2.0, warmup_fraction=0.1, cps_rampup_fraction=0.2)
    )
    schedule = cps_weight_schedule(config, total_steps=100)
    assert float(schedule(0)) == 0.0 and float(schedule(9)) == 0.0
    assert float(schedule(10)) == pytest.approx(2.0 * np.exp(-5.0))
    assert float(schedule(20)) == pytest.approx(2.0 * float(sigmoid_rampup(10, 20)))
    assert float(schedule(30)) == pytest.approx(2.0)
    assert float(schedule(1000)) == pytest.approx(2.0)
    constant = cps_weight_schedule(
        ml_collections.ConfigDict(dict(cps_weight=1.5, warmup_fraction=0.0, cps_rampup_fraction=0.0)),
        total_steps=100,
    )
    assert float(constant(0)) == 1.5
    config.warmup_fraction = 1.0
    with pytest.raises(ValueError, match="config.loss.warmup_fraction"):
        cps_weight_schedule(config, total_steps=100)


@pytest.mark.parametrize(
    "field,value",
    [("balance", "fair"), ("threshold", 1.0), ("cbst_keep", 0.0), ("align_momentum", 1.0)],
)
def test_bad_options_name_the_field(field, value):
    config = ml_collections.ConfigDict(
        dict(threshold=0.0, balance="none", cbst_keep=0.5, align_momentum=0.99, class_mask=False)
    )
    config[field] = value
    with pytest.raises(ValueError, match=f"config.pseudo.{field}"):
        Options.from_config(config)
