"""Every training method runs through the same step builder and trainer."""

import jax
import numpy as np
import pytest

from cps_jax import datasets, methods, optim, pseudo_labels
from cps_jax.methods.mean_teacher import ema_update
from cps_jax.methods.terms import sigmoid_rampup
from cps_jax.models.functional import net_graphdef
from cps_jax.state import create_train_state
from cps_jax.train_step import make_train_step
from cps_jax.trainer import Trainer
from configs import demo

NUM_CLASSES = 5


def method_config(method, pseudo=None, strong=None, **loss):
    config = demo.get_config("runlocal")
    config.method = method
    for key, value in (strong or {}).items():
        config.strong[key] = value
    for key, value in loss.items():
        config.loss[key] = value
    for key, value in (pseudo or {}).items():
        config.pseudo[key] = value
    return config


def build(config):
    tx, schedule = optim.make(config.optim, 100)
    extra = methods.get(config.method).initial_extra(config, NUM_CLASSES)
    state = jax.jit(
        lambda r: create_train_state(config.model, NUM_CLASSES, tx, r, config.method, extra)
    )(jax.random.key_data(jax.random.key(0)))
    step = jax.jit(
        make_train_step(net_graphdef(config.model, NUM_CLASSES), config, tx, schedule)
    )
    return state, step


def batch(seed=0, n=2, size=32):
    rng = np.random.default_rng(seed)
    image = lambda: rng.normal(size=(n, size, size, 3)).astype(np.float32)  # noqa: E731
    mask = lambda: rng.integers(0, NUM_CLASSES, (n, size, size)).astype(np.int32)  # noqa: E731
    tags = lambda: (rng.random((n, NUM_CLASSES)) < 0.6).astype(np.uint8)  # noqa: E731
    return dict(
        image_l=image(),
        mask_l=mask(),
        classes_l=(rng.random((n, NUM_CLASSES)) < 0.7).astype(np.uint8),
        image_u=image(),
        image_u1=image(),
        image_w=image(),
        mask_w=mask(),
        classes_w=tags(),
        pixel_w=np.arange(n) == 0,
    )


@pytest.mark.parametrize(
    "method,loss",
    # One compiled step per method in the fast tier; the ablations in the slow one.
    [(m, {}) for m in methods.names()]
    + [
        pytest.param(method, loss, marks=pytest.mark.slow)
        for method, loss in (
            ("cps", {"consistency": "cpc"}),
            ("cps", {"cps_on": "labeled"}),
            ("cps", {"cps_on": "unlabeled", "cps_reduction": "sum"}),
            ("cps_cutmix", {"cps_on": "unlabeled", "cutmix_pseudo_bn": "eval"}),
            ("cps", {"supervised": "ohem", "ohem_min_kept": 100}),
        )
    ],
)
def test_every_method_and_ablation_runs_two_steps(method, loss):
    state, step = build(method_config(method, **loss))
    for i in range(2):
        state, metrics = step(state, batch(i), jax.random.key_data(jax.random.key(i)))
        leaves = jax.tree.leaves(metrics)  # with the pseudo-label diagnostics' counts, if any
        assert all(np.isfinite(np.asarray(v)).all() for v in leaves), metrics
    assert int(state.step) == 2
    expected_terms = {
        "cps": {"cps"},
        "cps_cutmix": {"cps"},
        "supervised": set(),
        "mean_teacher": {"consistency"},
        "cutmix_seg": {"consistency"},
        "pct": {"cls", "h2p", "p2h"},
        "supervised_tags": {"cls"},
        "source_only": set(),
        "minent": {"entropy"},
        "adaptseg": {"adversarial", "discriminator"},
        "advent": {"adversarial", "discriminator"},
        "dacs": {"mix", "confident_share"},
    }[method]
    assert expected_terms <= set(metrics)
    if loss.get("cps_on") == "labeled":
        assert "cps_l" in metrics and "cps_u" not in metrics
    if loss.get("cps_on") == "unlabeled":
        assert "cps_u" in metrics and "cps_l" not in metrics


def test_supervised_has_one_net_and_cps_two_trained_nets():
    sup, _ = build(method_config("supervised"))
    assert set(sup.nets) == set(sup.opt_states) == {"left"}
    cps, _ = build(method_config("cps"))
    assert set(cps.nets) == set(cps.opt_states) == {"left", "right"}
    left, right = (jax.tree.leaves(cps.nets[n]["params"]) for n in ("left", "right"))
    assert not all(np.allclose(a, b) for a, b in zip(left, right))  # initialised differently


@pytest.mark.slow
@pytest.mark.parametrize("method", ["mean_teacher", "cutmix_seg"])
def test_teacher_is_the_ema_of_the_student(method):
    state, step = build(method_config(method, ema_decay=0.9))
    np.testing.assert_array_equal(  # the teacher starts as the student
        jax.tree.leaves(state.nets["left"]["params"])[0],
        jax.tree.leaves(state.nets["right"]["params"])[0],
    )
    new, _ = step(state, batch(), jax.random.key_data(jax.random.key(0)))
    for old_t, new_s, new_t in zip(  # params and BN statistics alike
        jax.tree.leaves(state.nets["right"]),
        jax.tree.leaves(new.nets["left"]),
        jax.tree.leaves(new.nets["right"]),
    ):
        np.testing.assert_allclose(
            new_t, 0.9 * np.asarray(old_t) + 0.1 * np.asarray(new_s), rtol=1e-6, atol=1e-7
        )
    assert set(new.opt_states) == {"left"}  # the teacher has no optimizer state


def test_ema_update_by_hand():
    teacher = {"a": np.array([1.0, 2.0]), "b": {"c": np.array(10.0)}}
    student = {"a": np.array([3.0, 0.0]), "b": {"c": np.array(0.0)}}
    out = ema_update(teacher, student, 0.99)
    np.testing.assert_allclose(out["a"], [1.0 * 0.99 + 3.0 * 0.01, 2.0 * 0.99])
    np.testing.assert_allclose(out["b"]["c"], 9.9)


def test_sigmoid_rampup_by_hand():
    np.testing.assert_allclose(sigmoid_rampup(0, 100), np.exp(-5.0), rtol=1e-6)
    np.testing.assert_allclose(sigmoid_rampup(50, 100), np.exp(-5.0 * 0.25), rtol=1e-6)
    np.testing.assert_allclose(sigmoid_rampup(150, 100), 1.0)
    np.testing.assert_allclose(sigmoid_rampup(3, 0), 1.0)


@pytest.mark.slow
@pytest.mark.parametrize("method", ["supervised", "cps_cutmix", "cutmix_seg"])
def test_trainer_runs_each_data_layout(method, tmp_path):
    """supervised (labeled stream only) and CutMix (two unlabeled streams), through the pipeline,
    checkpoints and evaluation."""
    config = method_config(method)
    config.data.data_dir = str(tmp_path / "data")
    config.total_steps = config.eval_every = config.checkpoint_every = 2
    trainer = Trainer(config, str(tmp_path / "run"), data=datasets.load(config.data))
    results = trainer.train()
    names = {"supervised": ["left"]}.get(method, ["left", "right", "ensemble"])
    assert list(results) == names
    assert all(0 <= r["miou"] <= 1 for r in results.values())
    restored = trainer.checkpointer.restore(2, trainer.abstract_state())
    assert set(restored.nets) == set(names) - {"ensemble"}


def two_steps(method, **options):
    """Losses and state after two steps from the same start, with execution `options`."""
    config = method_config(method, cps_weight=0.0)
    config.model.conv_impl = "patches"
    config.update(options)
    state, step = build(config)
    losses = []
    for i in range(2):
        state, metrics = step(state, batch(i), jax.random.key_data(jax.random.key(i)))
        losses += [float(metrics["loss"]), float(metrics["cps"])]
    return losses, state


@pytest.mark.parametrize(
    "method,variants",
    [
        ("cps", [{"fuse_pair": True}, {"remat": "full"}]),
        ("cps_cutmix", [{"fuse_pair": True}, {"remat": "dots"}]),
    ],
)
@pytest.mark.slow
def test_execution_options_give_the_same_step(method, variants):
    """Fusing the pair (vmap) and rematerialisation change how the step runs, not what it
    computes: two steps give the same losses, parameters and BN statistics. The cross term is
    computed but not trained on (weight 0): argmax pseudo labels flip on rounding-level ties,
    which would make the trajectories differ by more than rounding."""
    loss_a, state_a = two_steps(method)
    for options in variants:
        loss_b, state_b = two_steps(method, **options)
        # Rounding differs by CPU: measured on an AMD EPYC 2-core, losses 1.5e-5 apart
        # (relative) and parameters 6.5e-5 (absolute, on values near 0.1).
        np.testing.assert_allclose(loss_b, loss_a, rtol=5e-5, err_msg=str(options))
        for net in ("left", "right"):
            for part in ("params", "batch_stats"):
                jax.tree.map(
                    lambda a, b: np.testing.assert_allclose(
                        b, a, rtol=1e-4, atol=2e-4, err_msg=str(options)
                    ),
                    state_a.nets[net][part],
                    state_b.nets[net][part],
                )


def test_unknown_remat_policy_is_named():
    config = method_config("cps")
    config.remat = "some"
    with pytest.raises(ValueError, match="config.remat"):
        build(config)


def masked_batch(seed=0, n=2, size=32):
    """A batch with the unlabeled images' hidden masks, as the trainer sends for diagnostics."""
    rng = np.random.default_rng(seed + 100)
    out = batch(seed, n, size)
    out["mask_u"] = rng.integers(0, NUM_CLASSES, (n, size, size)).astype(np.int32)
    out["mask_u1"] = rng.integers(0, NUM_CLASSES, (n, size, size)).astype(np.int32)
    out["mask_u"][0, :4] = 255
    return out


@pytest.mark.parametrize(
    "method,pseudo,loss",
    [
        ("cps", {"balance": "align", "align_momentum": 0.9}, {}),
        ("cps_cutmix", {"balance": "cbst", "cbst_keep": 0.3}, {"cps_on": "unlabeled"}),
        ("cps_cutmix", {"threshold": 0.3}, {"strong": {"color_jitter": 0.4, "grayscale_p": 0.2}}),
        ("cps", {"threshold": 0.5}, {"warmup_fraction": 0.25, "cps_rampup_fraction": 0.5}),
        ("mean_teacher", {}, {}),
    ],
)
@pytest.mark.slow
def test_remedies_and_diagnostics_in_the_compiled_step(method, pseudo, loss):
    config = method_config(method, pseudo, **loss)
    if "strong" in loss:
        # The perturbed view changes what the nets learn from, not the shapes or the targets.
        plain_state, plain_step = build(method_config(method, pseudo))
        _, plain = plain_step(plain_state, masked_batch(0), jax.random.key_data(jax.random.key(0)))
    state, step = build(config)
    initial_extra = jax.device_get(state.extra)
    state, metrics = step(state, masked_batch(0), jax.random.key_data(jax.random.key(0)))
    counts = jax.device_get(metrics.pop("pseudo"))
    assert all(np.isfinite(float(v)) for v in metrics.values()), metrics
    nets = 1 if method == "mean_teacher" else 2
    pixels = 2 * 32 * 32 * nets
    assert counts["pixels"] == pixels
    ignored = 4 * 32 * nets  # the 255 rows of mask_u; with CutMix, mask_u1 covers some of them
    if method == "cps_cutmix":
        assert pixels - ignored < counts["masked_pixels"] < pixels
    else:
        assert counts["masked_pixels"] == pixels - ignored
    assert counts["confusion"].sum() == counts["masked_pixels"]
    summary = pseudo_labels.summarize(counts, [str(c) for c in range(NUM_CLASSES)])
    if pseudo.get("balance") == "cbst":
        # Every class keeps ceil(0.3 n_c) of its n_c pixels: a little over 30% in all.
        assert 0.3 <= summary["kept"] < 0.3 + NUM_CLASSES / (2 * 32 * 32)
    elif "threshold" in pseudo:
        kept = counts["kept"] / counts["pixels"]
        assert kept < 1.0 and summary["kept"] == kept
        if "warmup_fraction" in loss:
            assert float(metrics["cps_weight"]) == 0.0  # step 0 is in the supervised warm-up
    else:
        assert summary["kept"] == 1.0
    if pseudo.get("balance") == "align":
        prior = jax.device_get(state.extra["prior"])
        for net in ("left", "right"):
            # One EMA step away from uniform towards the labeled batch's class shares.
            labeled = pseudo_labels.label_share(masked_batch(0)["mask_l"], NUM_CLASSES)
            expected = 0.9 * initial_extra["prior"][net]["labeled"] + 0.1 * np.asarray(labeled)
            np.testing.assert_allclose(prior[net]["labeled"], expected, rtol=1e-6)
            assert not np.allclose(prior[net]["predicted"], 1.0 / NUM_CLASSES)
    else:
        assert state.extra == {}
    if "strong" in loss:
        np.testing.assert_allclose(metrics["sup_left"], plain["sup_left"], rtol=1e-6)
        assert abs(float(metrics["cps_u"]) - float(plain["cps_u"])) > 1e-4


def _cross_entropy(logits, labels):
    """Mean cross-entropy over every pixel, in NumPy (float64)."""
    logits = np.asarray(logits, np.float64)
    log_p = logits - logits.max(-1, keepdims=True)
    log_p -= np.log(np.exp(log_p).sum(-1, keepdims=True))
    return -np.take_along_axis(log_p, labels[..., None], -1).mean()


@pytest.mark.slow
def test_cps_with_a_strong_view_learns_on_it_from_the_clean_images_targets():
    """config.strong for plain CPS: each net's cross term is its prediction on the perturbed
    images against the other net's argmax on the clean ones (computed here by hand from the nets),
    and the pseudo labels are the clean images' (the same as without the perturbation)."""
    from cps_jax import augment
    from cps_jax.models.functional import apply_net

    plain_targets = {"balance": "none"}  # the demo's recipe keeps only some pixels (CBST)
    perturbation = {"color_jitter": 0.5, "grayscale_p": 0.5}
    config = method_config("cps", plain_targets, perturbation, cps_on="unlabeled")
    state, step = build(config)
    data, rng = masked_batch(0), jax.random.key_data(jax.random.key(3))
    _, metrics = step(state, data, rng)

    graphdef = net_graphdef(config.model, NUM_CLASSES)
    strong_key = jax.random.fold_in(jax.random.wrap_key_data(rng), 1)
    perturbed = augment.strong_view(data["image_u"], strong_key, config.strong)
    assert not np.allclose(perturbed, data["image_u"], atol=1e-3)

    def logits(net, images):  # train-mode BN normalises with the batch's own statistics
        return np.asarray(apply_net(graphdef, net["params"], net["batch_stats"], images, train=True)[0])

    clean = {n: logits(state.nets[n], data["image_u"]) for n in ("left", "right")}
    learner = {n: logits(state.nets[n], perturbed) for n in ("left", "right")}
    expected = _cross_entropy(learner["left"], clean["right"].argmax(-1)) + _cross_entropy(
        learner["right"], clean["left"].argmax(-1)
    )
    np.testing.assert_allclose(float(metrics["cps_u"]), expected, rtol=2e-5)

    off = {"color_jitter": 0.0, "grayscale_p": 0.0}
    plain_state, plain_step = build(method_config("cps", plain_targets, off, cps_on="unlabeled"))
    _, plain = plain_step(plain_state, data, rng)
    assert abs(float(plain["cps_u"]) - expected) > 1e-3  # the plain step learns on the clean images
    np.testing.assert_array_equal(  # same targets: the clean images' argmax
        jax.device_get(metrics["pseudo"]["confusion"]), jax.device_get(plain["pseudo"]["confusion"])
    )


@pytest.mark.slow
def test_cutmix_unmixed_term_is_the_mean_of_the_mixed_and_unmixed_cross_terms():
    """config.cutmix.unmixed_term: the unlabeled term is the mean of CutMix's (each net on the
    perturbed mixed images against the other's argmax of its mixed clean logits) and plain CPS's
    (on the perturbed first batch against the other's argmax on it), computed here by hand."""
    from cps_jax import augment, cutmix
    from cps_jax.models.functional import apply_net

    plain_targets = {"balance": "none"}
    perturbation = {"color_jitter": 0.5, "grayscale_p": 0.5}
    config = method_config("cps_cutmix", plain_targets, perturbation, cps_on="unlabeled")
    config.cutmix.unmixed_term = True
    state, step = build(config)
    data, rng = masked_batch(0), jax.random.key_data(jax.random.key(5))
    _, metrics = step(state, data, rng)

    graphdef = net_graphdef(config.model, NUM_CLASSES)
    key = jax.random.wrap_key_data(rng)
    n, h, w, _ = data["image_u"].shape
    masks = cutmix.box_masks(key, n, h, w, config.cutmix)
    mixed = augment.strong_view(
        cutmix.mix(data["image_u"], data["image_u1"], masks), jax.random.fold_in(key, 1), config.strong
    )
    unmixed = augment.strong_view(data["image_u"], jax.random.fold_in(key, 3), config.strong)
    assert not np.allclose(unmixed, data["image_u"], atol=1e-3)

    def logits(net, images):  # each batch its own train-mode forward, as the step's
        return np.asarray(apply_net(graphdef, net["params"], net["batch_stats"], images, train=True)[0])

    nets = ("left", "right")
    other = {"left": "right", "right": "left"}
    clean = {k: [logits(state.nets[k], data[x]) for x in ("image_u", "image_u1")] for k in nets}
    mixed_targets = {k: np.asarray(cutmix.mix(*clean[k], masks)).argmax(-1) for k in nets}
    mixed_term = sum(
        _cross_entropy(logits(state.nets[k], mixed), mixed_targets[other[k]]) for k in nets
    )
    unmixed_term = sum(
        _cross_entropy(logits(state.nets[k], unmixed), clean[other[k]][0].argmax(-1)) for k in nets
    )
    np.testing.assert_allclose(float(metrics["cps_u"]), (mixed_term + unmixed_term) / 2, rtol=2e-5)

    config.cutmix.unmixed_term = False  # the reference: the mixed images' term alone
    _, reference = build(config)[1](state, data, rng)
    np.testing.assert_allclose(float(reference["cps_u"]), mixed_term, rtol=2e-5)


@pytest.mark.slow
def test_labeled_perturbation_changes_only_the_labeled_images():
    """config.strong.labeled: the supervised loss sees the perturbed labeled images."""
    from cps_jax import augment
    from cps_jax.models.functional import apply_net

    config = method_config("supervised", strong={"color_jitter": 0.5, "grayscale_p": 0.0, "labeled": True})
    state, step = build(config)
    data, rng = masked_batch(0), jax.random.key_data(jax.random.key(4))
    _, metrics = step(state, data, rng)
    key = jax.random.fold_in(jax.random.wrap_key_data(rng), 2)
    perturbed = augment.strong_view(data["image_l"], key, config.strong)
    net = state.nets["left"]
    out = apply_net(net_graphdef(config.model, NUM_CLASSES), net["params"], net["batch_stats"], perturbed, train=True)[0]
    np.testing.assert_allclose(float(metrics["sup_left"]), _cross_entropy(out, data["mask_l"]), rtol=2e-5)
    plain = method_config("supervised", strong={"color_jitter": 0.5, "grayscale_p": 0.0})
    _, plain = build(plain)[1](state, data, rng)
    assert abs(float(plain["sup_left"]) - float(metrics["sup_left"])) > 1e-4
