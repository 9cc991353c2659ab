"""Data parallelism on 8 simulated devices equals one device; clear errors; the lr scaling rule."""

import os
import subprocess
import sys

import numpy as np
import pytest

import xla_flags
from cps_jax import datasets, parallel
from cps_jax.optim import learning_rate_schedule, peak_learning_rate
from cps_jax.trainer import Trainer
from configs import demo

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Float32 sums in a different order (8 partial sums, then an all-reduce; matmul blocking of the
# per-device patches) are all that differs: measured up to 1.1e-5. The step moves parameters by
# ~4e-2, three orders of magnitude above this tolerance.
ATOL, RTOL = 3e-5, 1e-5


@pytest.fixture(scope="module")
def eight_vs_one(tmp_path_factory):
    """Runs tests/run_parallel_step.py with 8 CPU devices (XLA_FLAGS must be set before JAX is
    imported, and this session already has one device)."""
    out = str(tmp_path_factory.mktemp("parallel") / "result.npz")
    env = {
        **os.environ,
        "PYTHONPATH": ROOT,
        "JAX_PLATFORMS": "cpu",
        "XLA_FLAGS": xla_flags.with_devices(8),
    }
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, "tests", "run_parallel_step.py"), out],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    result = np.load(out)
    return {k: result[k] for k in result.files}


def _pairs(result, prefix):
    keys = [k[2:] for k in result if k.startswith("8/" + prefix)]
    assert keys, prefix
    return [(k, result["8/" + k], result["1/" + k]) for k in keys]


@pytest.mark.slow
def test_one_step_on_8_devices_equals_1_device(eight_vs_one):
    for kind in ("['params']", "['batch_stats']", ".opt_states"):
        leaves = [p for p in _pairs(eight_vs_one, "state") if kind in p[0]]
        assert leaves, kind
        for key, sharded, single in leaves:
            np.testing.assert_allclose(sharded, single, atol=ATOL, rtol=RTOL, err_msg=key)
    for key, sharded, single in _pairs(eight_vs_one, "metrics"):
        np.testing.assert_allclose(sharded, single, rtol=RTOL, err_msg=key)
    # Both runs started from the same state, and the step moved it far beyond the tolerance.
    moved = 0.0
    for key, sharded, single in _pairs(eight_vs_one, "initial"):
        np.testing.assert_array_equal(sharded, single, err_msg=key)
        if "['params']" in key:
            after = eight_vs_one["8/state" + key[len("initial") :]]
            moved = max(moved, float(np.abs(after - sharded).max()))
    assert moved > 300 * ATOL, moved


@pytest.mark.slow
def test_batchnorm_statistics_are_over_the_global_batch(eight_vs_one):
    """With one image per device, per-device statistics would differ from the 1-device run by far
    more than float noise; the running means all moved, and agree."""
    stats = [p for p in _pairs(eight_vs_one, "state") if "['batch_stats']" in p[0]]
    means = [p for p in stats if p[0].endswith("['mean']")]
    assert len(means) > 10
    for key, sharded, single in means:
        initial = eight_vs_one["8/initial" + key[len("state") :]]
        assert np.abs(single - initial).max() > 1e-4, key  # training updated it
        np.testing.assert_allclose(sharded, single, atol=ATOL, rtol=RTOL, err_msg=key)


@pytest.mark.slow
def test_sharded_evaluation_equals_1_device(eight_vs_one):
    evals = _pairs(eight_vs_one, "eval")
    assert {k.split("/")[1] for k, _, _ in evals} == {"left", "right", "ensemble"}
    for key, sharded, single in evals:
        np.testing.assert_allclose(sharded, single, rtol=1e-6, err_msg=key)
        assert np.nanmax(single) > 0, key  # scored something


@pytest.mark.slow
def test_a_global_batch_that_does_not_divide_is_a_clear_error(eight_vs_one):
    assert str(eight_vs_one["error/labeled"]) == (
        "config.batch_size_labeled=6 must divide by the number of devices (8); "
        "choose a multiple of 8"
    )
    assert "'image_l': 12 rows" in str(eight_vs_one["error/rows"])
    assert "8 devices" in str(eight_vs_one["error/rows"])


def test_check_divisible_names_the_field_on_this_mesh():
    mesh = parallel.make_mesh()
    parallel.check_divisible(3 * mesh.size, mesh, "eval_batch_size")  # no error
    assert parallel.data_parallel_size(mesh) == mesh.size


# The lr / batch-size rule.


def _optim(**overrides):
    config = demo.get_config().optim
    config.update(overrides)
    return config


def test_lr_scaling_none_uses_lr_as_given():
    assert peak_learning_rate(_optim(lr=0.01), global_batch=32) == 0.01
    assert peak_learning_rate(_optim(lr=0.01)) == 0.01


@pytest.mark.parametrize("batch", [4, 8, 16, 64])
def test_lr_scaling_linear_follows_the_global_labeled_batch(batch):
    optim = _optim(lr=0.01, lr_scaling="linear", base_batch=8)
    expected = 0.01 * batch / 8  # the reference: 0.01 at 8 labeled images (VOC)
    assert peak_learning_rate(optim, batch) == pytest.approx(expected)
    schedule = learning_rate_schedule(optim, total_steps=100, global_batch=batch)
    assert float(schedule(0)) == pytest.approx(expected, rel=1e-6)
    assert float(schedule(50)) == pytest.approx(expected * 0.5**0.9, rel=1e-5)  # poly decay


def test_linear_scaling_with_warmup_ramps_to_the_scaled_lr():
    optim = _optim(lr=0.01, lr_scaling="linear", base_batch=8, warmup_steps=10)
    schedule = learning_rate_schedule(optim, total_steps=110, global_batch=32)
    assert float(schedule(0)) == 0.0
    assert float(schedule(5)) == pytest.approx(0.02, rel=1e-6)
    assert float(schedule(10)) == pytest.approx(0.04, rel=1e-6)


def test_the_trainer_scales_lr_by_an_overridden_batch_size(tmp_path):
    config = demo.get_config("runlocal")
    config.optim.lr_scaling, config.optim.base_batch, config.optim.lr = "linear", 8, 0.02
    config.batch_size_labeled = 4  # an override after the config was built
    data = datasets.SegmentationData(
        train=[], validation=[], class_names=["a", "b"], palette=np.zeros((2, 3)), name="x"
    )
    trainer = Trainer(config, str(tmp_path), data=data)
    assert float(trainer.lr_schedule(0)) == pytest.approx(0.01, rel=1e-6)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(lr_scaling="sqrt"), "config.optim.lr_scaling must be one of ('none', 'linear')"),
        (dict(lr_scaling="linear", base_batch=0), "config.optim.base_batch must be a positive"),
    ],
)
def test_bad_lr_scaling_fields_are_named(overrides, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        peak_learning_rate(_optim(**overrides), 8)


def test_linear_scaling_without_the_batch_is_an_error():
    with pytest.raises(ValueError, match="batch_size_labeled"):
        peak_learning_rate(_optim(lr_scaling="linear"))
