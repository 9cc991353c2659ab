"""Checkpoints that cannot be read (truncated, empty, incomplete, non-finite): resumption and
cps-eval fall back to the one before with a warning line, or stop with one line; no traceback."""

import os
import re
import shutil
import signal

import jax
import numpy as np
import pytest

import cli_runs
from cps_jax import checkpointing, restore
from cps_jax.commands import export as cps_export
from cps_jax.checkpointing import UNREADABLE_DIR
from cps_jax import optim
from cps_jax.state import create_train_state
from cps_jax.trainer import checkpoint_dir
from configs import demo

NUM_CLASSES = 13


def _steps(workdir, folder="checkpoints"):
    path = os.path.join(workdir, folder)
    return sorted(int(d) for d in os.listdir(path) if d.isdigit()) if os.path.isdir(path) else []


def _truncate_data_files(folder):
    """Cuts every array data file of a checkpoint's state short, as an interrupted copy would.
    (Not only the largest: which file holds the nets and which the optimizer state varies, and
    evaluation reads the nets only.)"""
    data = [
        os.path.join(r, f) for r, _, fs in os.walk(folder) if os.path.basename(r) == "d" for f in fs
    ]
    assert data, f"no array data files under {folder}"
    for path in data:
        with open(path, "r+b") as f:
            f.truncate(100)


def _warnings(stderr):
    return [line for line in stderr.splitlines() if line.startswith("warning: ")]


@pytest.mark.slow
def test_a_truncated_and_an_empty_latest_checkpoint_give_way_to_the_one_before(tmp_path):
    workdir = str(tmp_path / "run")
    flags = ["--config.checkpoint_every=2", "--config.eval_every=2", "--config.keep_checkpoints=3"]
    out = cli_runs.train(workdir, "--config.total_steps=6", *flags)
    assert out.returncode == 0, out.stderr[-3000:]
    assert _steps(workdir) == [2, 4, 6]
    directory = os.path.join(workdir, "checkpoints")
    _truncate_data_files(os.path.join(directory, "6", "state"))
    os.mkdir(os.path.join(directory, "8"))

    out = cli_runs.run("eval", f"--config={cli_runs.CONFIG}", f"--workdir={workdir}")
    assert out.returncode == 0, out.stderr[-3000:]
    warned = _warnings(out.stderr)
    assert [w.split(" (")[0] for w in warned] == [
        f"warning: checkpoint step 8 in {directory} cannot be read",
        f"warning: checkpoint step 6 in {directory} cannot be read",
    ]
    assert all(w.endswith("; using step 4") for w in warned), warned
    assert "Results at step 4" in out.stdout and "Traceback" not in out.stderr

    out = cli_runs.run("eval", f"--config={cli_runs.CONFIG}", f"--workdir={workdir}", "--step=6")
    assert out.returncode == 1
    [line] = out.stderr.strip().splitlines()[-1:]
    assert line.startswith(f"error: checkpoint step 6 in {directory} cannot be read: ") and (
        "6/state" in line
    ), line
    assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) <= 2

    out = cli_runs.train(workdir, "--config.total_steps=8", *flags)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "Resuming from step 4" in out.stdout and "Traceback" not in out.stderr
    moved = os.path.join(workdir, UNREADABLE_DIR)
    assert [w.split("; ")[-1] for w in _warnings(out.stderr)] == [
        f"moved it to {os.path.join(moved, '8')}",
        f"moved it to {os.path.join(moved, '6')}",
    ]
    assert _steps(workdir) == [4, 6, 8] and _steps(workdir, UNREADABLE_DIR) == [6, 8]


@pytest.fixture(scope="module")
def config(tmp_path_factory):
    config = demo.get_config("runlocal")
    config.data.data_dir = str(tmp_path_factory.mktemp("data"))
    return config


@pytest.mark.slow
def test_a_checkpoint_without_its_data_iterator_state_gives_way_to_the_one_before(
    config, tmp_path, capsys
):
    from cps_jax.trainer import Trainer

    workdir = str(tmp_path / "run")
    Trainer(config, workdir).train()
    assert _steps(workdir) == [2, 4]
    shutil.rmtree(os.path.join(checkpoint_dir(workdir), "4", "data"))
    resumed = Trainer(config, workdir)
    resumed.train()
    captured = capsys.readouterr()
    assert "Resuming from step 2" in captured.out
    assert f"warning: checkpoint step 4 in {checkpoint_dir(workdir)} cannot be read" in captured.err
    assert int(resumed.state.step) == 4 and _steps(workdir, UNREADABLE_DIR) == [4]


@pytest.mark.slow
def test_a_non_finite_checkpoint_is_refused_and_latest_falls_back(config, tmp_path, capsys):
    workdir = str(tmp_path / "run")
    tx, _ = optim.make(config.optim, config.total_steps)
    state = jax.jit(lambda r: create_train_state(config.model, NUM_CLASSES, tx, r))(
        jax.random.key_data(jax.random.key(0))
    )
    nan_params = jax.tree.map(lambda p: p * np.nan, state.nets["left"]["params"])
    nan = state.replace(nets=dict(state.nets, left=dict(state.nets["left"], params=nan_params)))
    checkpointer = checkpointing.Checkpointer(checkpoint_dir(workdir))
    checkpointer.save(2, state, metrics={"miou": 0.1})
    checkpointer.save(4, nan, metrics={"miou": 0.3})  # a diverged run's best, as before the guard
    checkpointer.wait()
    checkpointer.close()
    mesh = jax.sharding.Mesh(jax.devices(), ("data",))
    with pytest.raises(checkpointing.Unreadable, match="step 4 .* holds non-finite values"):
        restore.restore_nets(config, workdir, NUM_CLASSES, mesh, "best")
    step, _ = restore.restore_nets(config, workdir, NUM_CLASSES, mesh, "latest")
    assert step == 2 and "step 4" in capsys.readouterr().err
    with pytest.raises(checkpointing.Unreadable, match="non-finite"):
        cps_export.export_model(config, workdir, step="4", output=str(tmp_path / "m.cpsj"))


# ------------------------------------------------------------------------ stopping on request
@pytest.mark.slow
def test_sigterm_saves_the_step_in_hand_and_exits_143_and_the_run_resumes_from_it(tmp_path):
    workdir = str(tmp_path / "run")
    flags = ["--config.checkpoint_every=100", "--config.eval_every=100"]
    proc = cli_runs.start_train(workdir, "--config.total_steps=200", *flags)
    cli_runs.wait_for(proc, "step 3/200")
    proc.send_signal(signal.SIGTERM)
    output = proc.communicate(timeout=300)[0]
    assert proc.returncode == 143, output[-3000:]
    last = output.strip().splitlines()[-1]
    match = re.fullmatch(
        r"stopped by SIGTERM at step (\d+): saved checkpoint step \1 in (.*); run the same "
        "command to resume",
        last,
    )
    assert match and match[2] == os.path.join(workdir, "checkpoints"), last
    assert "Traceback" not in output
    stopped = int(match[1])
    assert _steps(workdir) == [stopped]
    out = cli_runs.train(workdir, f"--config.total_steps={stopped + 1}", *flags)
    assert out.returncode == 0, out.stderr[-3000:]
    assert f"Resuming from step {stopped} " in out.stdout


@pytest.mark.slow
def test_ctrl_c_during_an_async_save_lets_it_land_and_says_so_in_one_line(tmp_path):
    workdir = str(tmp_path / "run")
    # A save every step: Ctrl-C finds one in flight.
    flags = ["--config.total_steps=200", "--config.checkpoint_every=1", "--config.eval_every=100"]
    proc = cli_runs.start_train(workdir, *flags)
    cli_runs.wait_for(proc, "step 3/200")
    proc.send_signal(signal.SIGINT)
    output = proc.communicate(timeout=300)[0]
    assert proc.returncode == 130, output[-3000:]
    last = output.strip().splitlines()[-1]
    match = re.fullmatch(
        r"interrupted at step (\d+); the last complete checkpoint is step (\d+) in .*; run the "
        "same command to resume",
        last,
    )
    assert match, last
    assert "Traceback" not in output and "cannot schedule new futures" not in output
    directory = os.path.join(workdir, "checkpoints")
    assert not [d for d in os.listdir(directory) if "tmp" in d]  # nothing half written
    assert _steps(workdir)[-1] == int(match[2]) >= 2
    step, _ = restore.restore_nets(
        demo.get_config("runlocal"), workdir, NUM_CLASSES, jax.sharding.Mesh(jax.devices(), ("d",))
    )
    assert step == int(match[2])


@pytest.mark.slow
def test_a_checkpoint_that_cannot_be_written_is_one_line_and_leaves_no_unfinished_files(tmp_path):
    workdir = str(tmp_path / "run")
    out = cli_runs.run("prepare", f"--config={cli_runs.CONFIG}")  # the data, without a limit
    assert out.returncode == 0, out.stderr[-3000:]
    # Every checkpoint holds files larger than this; the logs and images are smaller.
    out = cli_runs.run(
        "train", *cli_runs.train_args(workdir), max_file_size=300_000,
        JAX_ENABLE_COMPILATION_CACHE="false",
    )  # fmt: skip
    assert out.returncode == 1, out.stderr[-3000:]
    [line] = out.stderr.strip().splitlines()
    directory = os.path.join(workdir, "checkpoints")
    assert line.startswith(
        f"error: cannot write checkpoint step 2 in {directory}: File too large (errno 27); "
        "removed its unfinished files (2.orbax-checkpoint-tmp"
    ), line
    assert os.listdir(directory) == []
