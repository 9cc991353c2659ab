"""A run whose loss goes non-finite or blows up stops with one line; nothing of it is saved."""

import json
import os
import re

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import cli_runs
from cps_jax import divergence


@flax.struct.dataclass
class _State:
    step: jax.Array
    w: jax.Array


def _fake_step(losses):
    """A step whose loss at step i is losses[i] and whose update adds 1 to w."""
    losses = jnp.asarray(losses, jnp.float32)

    def step(state, batch, rng):
        loss = losses[state.step]
        metrics = {"loss": loss, "grad_norm": jnp.abs(loss)}
        return _State(step=state.step + 1, w=state.w + 1.0), metrics

    return step


def _run_guarded(losses, max_loss=0.0):
    guarded = jax.jit(divergence.guard(_fake_step(losses), max_loss))
    state = _State(step=jnp.zeros((), jnp.int32), w=jnp.zeros(()))
    health = divergence.initial_health()
    for _ in range(len(losses)):
        state, health, _ = guarded(state, health, None, None)
    return state, health


def test_a_sane_run_is_untouched():
    state, health = _run_guarded([3.0, 2.0, 5.0, 1.0])
    assert int(state.step) == 4 and float(state.w) == 4.0
    assert divergence.describe(health) is None


@pytest.mark.parametrize(
    "losses, bad_step, what",
    [
        ([3.0, 2.0, np.nan, 1.0, 1.0], 3, "loss nan"),
        ([3.0, np.inf, 1.0], 2, "loss inf"),
        # A finite blow-up: 1e6 x the first loss.
        ([3.0, 2.0, 2.0, 5e11, 1.0], 4, "above 3e+06, 1e+06 x the first loss"),
    ],
)
def test_the_first_bad_step_is_recorded_and_the_state_kept_from_then_on(losses, bad_step, what):
    state, health = _run_guarded(losses)
    # The state is the one before the bad step, even though later steps were sane again.
    assert int(state.step) == bad_step - 1 and float(state.w) == bad_step - 1
    described = divergence.describe(health)
    assert described.startswith(f"step {bad_step} (") and what in described, described


def test_max_loss_bounds_the_loss_when_set():
    _, health = _run_guarded([3.0, 50.0, 1.0], max_loss=40.0)
    assert divergence.describe(health, 40.0) == "step 2 (loss 50 above 40, config.max_loss)"


def test_a_first_loss_near_zero_does_not_make_every_later_loss_a_blow_up():
    _, health = _run_guarded([1e-9, 0.5, 2.0])
    assert divergence.describe(health) is None


def _checkpoints(workdir):
    return sorted(int(d) for d in os.listdir(os.path.join(workdir, "checkpoints")) if d.isdigit())


@pytest.mark.slow
def test_a_diverging_resume_saves_nothing_and_names_the_last_good_checkpoint(tmp_path):
    workdir = str(tmp_path / "run")
    good = ["--config.total_steps=10", "--config.checkpoint_every=5", "--config.eval_every=10"]
    out = cli_runs.train(workdir, *good)
    assert out.returncode == 0, out.stderr[-3000:]
    for noise in ("OpenCV", "tracked_metric", "custom data configuration"):  # console.NOISE
        assert noise not in out.stderr, out.stderr
    best = json.load(open(os.path.join(workdir, "results.json")))["best"]
    # The loss is logged only at the end: the step checks it every step all the same.
    bad = ["--config.total_steps=40", "--config.log_every=40", "--config.optim.lr=1e12"]
    out = cli_runs.train(workdir, *good[1:], *bad)
    assert out.returncode == 1, out.stderr[-3000:]
    last = out.stderr.strip().splitlines()[-1]
    assert re.fullmatch(
        r"error: training diverged at step 1[1-5] \(loss .*\); the last good checkpoint is step 10 "
        rf"in {re.escape(os.path.join(workdir, 'checkpoints'))}; lower config\.optim\.lr",
        last,
    ), last
    assert "Traceback" not in out.stderr
    assert _checkpoints(workdir) == [5, 10]
    assert json.load(open(os.path.join(workdir, "results.json")))["best"] == best
    # A sane learning rate resumes from the good checkpoint and trains on.
    out = cli_runs.train(workdir, *good[1:], "--config.total_steps=12")
    assert out.returncode == 0, out.stderr[-3000:]
    assert "Resuming from step 10" in out.stdout and _checkpoints(workdir)[-1] == 12
