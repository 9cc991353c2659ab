"""End-to-end: the train step, the trainer loop, checkpoints and resumption, standalone evaluation."""

import json
import os

import jax
import numpy as np
import pytest

from cps_jax import datasets
from cps_jax.commands import evaluate as cps_eval
from cps_jax import optim
from cps_jax.models.functional import net_graphdef
from cps_jax.state import create_train_state
from cps_jax.train_step import make_train_step
from cps_jax.trainer import Trainer
from configs import demo

NUM_CLASSES = 5


@pytest.fixture(scope="module")
def config(tmp_path_factory):
    config = demo.get_config("runlocal")
    config.data.data_dir = str(tmp_path_factory.mktemp("data"))
    return config


@pytest.fixture(scope="module")
def data(config):
    return datasets.load(config.data)


def _state_and_step(config, num_classes=NUM_CLASSES, total_steps=100):
    tx, schedule = optim.make(config.optim, total_steps)
    graphdef = net_graphdef(config.model, num_classes)
    state = jax.jit(lambda r: create_train_state(config.model, num_classes, tx, r))(
        jax.random.key_data(jax.random.key(0))
    )
    step = jax.jit(
        make_train_step(graphdef, config, tx, schedule)
    )
    return state, step


def _fixed_batch(n=2, size=32, seed=0):
    rng = np.random.default_rng(seed)
    mask = np.zeros((n, size, size), np.int32)
    mask[:, size // 2 :] = 1
    mask[:, :, : size // 4] = 2
    image = rng.normal(size=(n, size, size, 3)).astype(np.float32) * 0.1 + mask[..., None] * 0.5
    return dict(image_l=image, mask_l=mask, image_u=image[::-1].copy())


def test_the_two_nets_start_different(config):
    state, _ = _state_and_step(config)
    left, right = (jax.tree.leaves(state.nets[n]["params"]) for n in ("left", "right"))
    kernels_differ = [not np.array_equal(a, b) for a, b in zip(left, right) if a.ndim == 4]
    assert kernels_differ and all(kernels_differ)


@pytest.mark.slow
def test_a_few_steps_on_one_batch_drive_the_loss_down(config):
    state, step = _state_and_step(config)
    batch, losses = _fixed_batch(), []
    for i in range(12):
        state, metrics = step(state, batch, jax.random.key_data(jax.random.key(i)))
        # The supervised term: the total also holds the cross term, which the recipe ramps up
        # during these steps and which can rise while the nets fit the batch.
        losses.append(float(metrics["sup_left"]))
    assert all(np.isfinite(losses))
    assert losses[-1] < 0.5 * losses[0], losses
    assert int(state.step) == 12


@pytest.mark.slow
def test_batch_stats_are_updated_by_training(config):
    state, step = _state_and_step(config)
    new, _ = step(state, _fixed_batch(), jax.random.key_data(jax.random.key(0)))
    before = jax.tree.leaves(state.nets["left"]["batch_stats"])
    after = jax.tree.leaves(new.nets["left"]["batch_stats"])
    assert any(not np.allclose(a, b) for a, b in zip(before, after))


def _params_allclose(a, b, **kw):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), **kw)


@pytest.mark.slow
def test_resume_equals_uninterrupted_training(config, data, tmp_path):
    config = config.copy_and_resolve_references()
    config.total_steps, config.eval_every, config.checkpoint_every = 4, 2, 2
    straight = Trainer(config, str(tmp_path / "straight"), data=data)
    straight.train()
    interrupted = Trainer(config, str(tmp_path / "resumed"), data=data)
    interrupted.train(until=2)
    assert interrupted.checkpointer.latest_step() == 2
    resumed = Trainer(config, str(tmp_path / "resumed"), data=data)
    resumed.train()
    assert int(resumed.state.step) == 4
    for net in ("left", "right"):
        _params_allclose(
            straight.state.nets[net]["params"],
            resumed.state.nets[net]["params"],
            rtol=1e-6,
            atol=1e-7,
        )
        _params_allclose(
            straight.state.nets[net]["batch_stats"],
            resumed.state.nets[net]["batch_stats"],
            rtol=1e-6,
            atol=1e-7,
        )


@pytest.mark.slow
def test_checkpoint_round_trip_and_standalone_eval(config, data, tmp_path):
    workdir = str(tmp_path / "run")
    trainer = Trainer(config, workdir, data=data)
    results = trainer.train()
    restored = trainer.checkpointer.restore(
        trainer.checkpointer.latest_step(), trainer.abstract_state()
    )
    _params_allclose(jax.device_get(trainer.state), jax.device_get(restored), rtol=0, atol=0)
    # The standalone evaluation restores params only and gets the training-time figures.
    step, _, evaluated = cps_eval.evaluate_checkpoint(config, workdir, step="latest")
    assert step == config.total_steps
    for net in ("left", "right", "ensemble"):
        np.testing.assert_allclose(evaluated[net]["miou"], results[net]["miou"], rtol=1e-6)
    # What a person looks at: the log, the results table and a prediction image.
    assert os.path.exists(os.path.join(workdir, "images", f"eval_{config.total_steps:06d}.png"))
    lines = [json.loads(l) for l in open(os.path.join(workdir, "metrics.jsonl"))]
    assert any("train/cps_u" in l for l in lines) and any("eval/left/miou" in l for l in lines)
    saved = json.load(open(os.path.join(workdir, "results.json")))
    assert saved["step"] == config.total_steps and 0 <= saved["left"]["miou"] <= 1
    # Pseudo-label diagnostics of the unlabeled stream: logged, tabled per class, plotted.
    shares = [l for l in lines if "pseudo/accuracy" in l]
    assert len(shares) == config.total_steps // config.log_every
    names = data.class_names
    for l in shares:
        assert sum(l[f"pseudo/share/{n}"] for n in names) == pytest.approx(1.0)
        assert sum(l[f"pseudo/true_share/{n}"] for n in names) == pytest.approx(1.0)
        # The demo's recipe (CBST) keeps a share of the pixels; the reference one keeps them all.
        assert 0 <= l["pseudo/agreement"] <= 1 and 0 < l["pseudo/kept"] <= 1
    assert saved["pseudo"]["accuracy"] == shares[-1]["pseudo/accuracy"]
    assert "| class | true share | pseudo share | pseudo IoU |" in open(
        os.path.join(workdir, "results.md")
    ).read()
    assert os.path.getsize(os.path.join(workdir, "images", "pseudo_shares.png")) > 1000


@pytest.mark.slow
def test_best_checkpoint_is_kept_and_selectable(config, data, tmp_path):
    config = config.copy_and_resolve_references()
    config.total_steps, config.keep_checkpoints = 6, 1
    trainer = Trainer(config, str(tmp_path / "run"), data=data)
    trainer.train()
    ckpt = trainer.checkpointer
    scores = {s: ckpt.metrics(s) for s in ckpt.all_steps()}
    best = ckpt.resolve_step("best")
    assert ckpt.latest_step() == 6 and best in scores
    logged = [json.loads(l) for l in open(tmp_path / "run" / "metrics.jsonl")]
    mious = {l["step"]: l["eval/left/miou"] for l in logged if "eval/left/miou" in l}
    assert mious[best] == max(mious.values())
    with pytest.raises(FileNotFoundError, match="step 3"):
        ckpt.resolve_step(3)


def test_cps_reduction_mean_is_the_concatenated_mean_and_sum_is_the_papers():
    from cps_jax.methods.cross_term import combine_cps

    # Labeled part: 2 images, unlabeled: 6; the mean over all 8 weighs them by image count.
    np.testing.assert_allclose(combine_cps(1.0, 3.0, 2, 6, "mean"), (2 * 1.0 + 6 * 3.0) / 8)
    np.testing.assert_allclose(combine_cps(1.0, 3.0, 2, 6, "sum"), 4.0)
    with pytest.raises(ValueError, match="cps_reduction"):
        combine_cps(1.0, 3.0, 2, 6, "max")


@pytest.mark.slow
def test_joint_bn_pass_changes_the_batch_statistics_seen(config):
    # Separate forward calls normalise labeled and unlabeled images with their own batch statistics;
    # the joint switch uses one call over both, so the same batch gives a different first step.
    batch = _fixed_batch()
    batch["image_u"] = batch["image_u"] * 3.0 + 1.0
    out = {}
    for joint in (False, True):
        cfg = config.copy_and_resolve_references()
        cfg.loss.joint_bn = joint
        state, step = _state_and_step(cfg)
        out[joint] = step(state, batch, jax.random.key_data(jax.random.key(0)))[1]
    assert abs(float(out[True]["sup_left"]) - float(out[False]["sup_left"])) > 1e-4


def test_scalar_curves_keep_the_later_entry_of_a_resumed_step(tmp_path):
    from cps_jax import plots

    records = [
        {"step": 1, "train/a": 3.0},
        {"step": 2, "train/a": 2.0, "train/b": 5.0},
        {"step": 2, "train/a": 1.5},  # logged again after a resume
        {"step": 3, "eval/c": 0.1},
    ]
    curves = plots.scalar_curves(records, ["train/a", "train/b", "train/missing"])
    np.testing.assert_array_equal(curves["train/a"][0], [1, 2])
    np.testing.assert_array_equal(curves["train/a"][1], [3.0, 1.5])
    np.testing.assert_array_equal(curves["train/b"][1], [5.0])
    assert "train/missing" not in curves
    with open(tmp_path / "metrics.jsonl", "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in records)
    path = str(tmp_path / "curves.png")
    assert plots.scalar_curves_figure(str(tmp_path), ["train/a"], path, "loss")
    assert os.path.getsize(path) > 0
    assert not plots.scalar_curves_figure(str(tmp_path), ["train/missing"], path, "loss")
    np.testing.assert_allclose(plots.moving_average(np.array([1.0, 3.0, 5.0, 7.0]), 2), [1, 2, 4, 6])
