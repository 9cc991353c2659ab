"""The workdir: one cps-train at a time (a lock), a stale lock taken over."""

import json
import os
import re
import socket
import subprocess
import sys

import pytest

import cli_runs
from cps_jax.errors import ConfigError
from cps_jax.workdir_lock import LOCK_FILE, WorkdirLock


def test_a_held_lock_names_its_holder_and_is_free_again_once_released(tmp_path):
    first = WorkdirLock(str(tmp_path)).acquire()
    holder = json.load(open(tmp_path / LOCK_FILE))
    assert holder["pid"] == os.getpid() and holder["host"] == socket.gethostname()
    with pytest.raises(ConfigError, match=rf"in use by cps-train pid {os.getpid()} on host"):
        WorkdirLock(str(tmp_path)).acquire()
    first.release()
    assert not os.path.exists(tmp_path / LOCK_FILE)
    WorkdirLock(str(tmp_path)).acquire().release()


def test_the_lock_file_of_a_dead_process_is_taken_over(tmp_path, capsys):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], text=True,
                          capture_output=True).stdout.strip()  # fmt: skip
    (tmp_path / LOCK_FILE).write_text(
        json.dumps({"pid": int(dead), "host": socket.gethostname(), "since": "then"})
    )
    with WorkdirLock(str(tmp_path)):
        assert json.load(open(tmp_path / LOCK_FILE))["pid"] == os.getpid()
    assert f"Taking over the stale lock of cps-train pid {dead}" in capsys.readouterr().out


@pytest.mark.slow
def test_a_second_cps_train_on_a_workdir_in_use_exits_2_before_any_work(tmp_path):
    with WorkdirLock(str(tmp_path)):
        out = cli_runs.train(str(tmp_path))
    assert out.returncode == 2, out.stderr[-3000:]
    [line] = out.stderr.strip().splitlines()
    assert line.startswith(
        f"error: --workdir {tmp_path}: in use by cps-train pid {os.getpid()} on host "
        f"{socket.gethostname()} (since "
    ), line
    assert not os.path.exists(tmp_path / "checkpoints")  # no data loaded, nothing compiled


@pytest.mark.slow
def test_a_run_killed_with_sigkill_leaves_a_stale_lock_that_the_next_run_takes_over(tmp_path):
    workdir = str(tmp_path / "run")
    flags = ["--config.total_steps=6", "--config.checkpoint_every=2", "--config.eval_every=2"]
    proc = cli_runs.start_train(workdir, *flags)
    cli_runs.wait_for(proc, "step 5/6")  # the save of step 4 waited for that of step 2
    proc.kill()
    proc.wait()
    assert os.path.exists(os.path.join(workdir, LOCK_FILE))
    out = cli_runs.train(workdir, *flags)
    assert out.returncode == 0, out.stderr[-3000:]
    assert f"Taking over the stale lock of cps-train pid {proc.pid}" in out.stdout
    assert re.search(r"Resuming from step [24] ", out.stdout), out.stdout
    assert not os.path.exists(os.path.join(workdir, LOCK_FILE))


# ------------------------------------------------------------------------ the run's own config
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A run of the tiny config, trained by the trainer: its workdir and config."""
    from configs import demo
    from cps_jax.trainer import Trainer

    config = demo.get_config("runlocal")
    config.data.data_dir = str(tmp_path_factory.mktemp("data"))
    workdir = str(tmp_path_factory.mktemp("run"))
    Trainer(config, workdir).train()
    return workdir, config


@pytest.mark.slow
def test_the_run_keeps_its_config_and_the_commands_use_it_by_default(trained, tmp_path):
    from cps_jax import export, run_config
    from cps_jax.commands import evaluate as cps_eval
    from cps_jax.commands import export as cps_export
    from cps_jax.commands import predict as cps_predict

    workdir, config = trained
    saved = run_config.load(workdir)
    assert saved.model.width == config.model.width and saved.data.name == config.data.name
    by_default = cps_eval.evaluate(None, workdir)["latest"]
    given = cps_eval.evaluate(config, workdir)["latest"]
    assert by_default[0] == given[0] == config.total_steps
    assert by_default[1]["left"]["miou"] == pytest.approx(given[1]["left"]["miou"])
    model = export.load(cps_export.export_model(None, workdir, output=str(tmp_path / "m.cpsj")))
    assert model.config.model.width == config.model.width
    assert cps_predict.load_model(workdir=workdir).step == config.total_steps


@pytest.mark.slow
def test_a_config_that_differs_on_the_nets_fields_is_named(trained):
    from cps_jax import run_config
    from cps_jax.commands import evaluate as cps_eval
    from cps_jax.commands import predict as cps_predict
    from cps_jax.trainer import checkpoint_dir

    workdir, config = trained
    wider = config.copy_and_resolve_references()
    wider.model.width = 16
    expected = (
        f"config.model.width is 16, but the run in {workdir} was trained with 8 "
        rf"\({os.path.join(workdir, 'config.json')}\); leave --config out to use the run's own"
    )
    with pytest.raises(ConfigError, match=expected):
        cps_eval.evaluate(wider, workdir)
    with pytest.raises(ConfigError, match="config.model.width is 16"):
        cps_predict.load_model(config=wider, workdir=workdir)
    other = config.copy_and_resolve_references()
    other.optim.name = "adamw"
    with pytest.raises(ConfigError, match="config.optim.name is 'adamw'.*another --workdir"):
        run_config.check_resume(other, workdir, checkpoint_dir(workdir))
    # What may change on resuming or evaluating: the lr, the evaluation mode, the execution.
    other = config.copy_and_resolve_references()
    other.optim.lr, other.eval.mode, other.model.conv_impl = 0.5, "sliding", "xla"
    run_config.check_resume(other, workdir, checkpoint_dir(workdir))
    run_config.check_matches(other, run_config.load(workdir), workdir)


@pytest.mark.slow
def test_cps_eval_without_a_config_uses_the_runs_and_names_a_wrong_field(trained):
    workdir, config = trained
    data = f"--config.data.data_dir={config.data.data_dir}"
    out = cli_runs.run("eval", f"--workdir={workdir}")
    assert out.returncode == 0, out.stderr[-3000:]
    assert f"Results at step {config.total_steps}" in out.stdout
    for noise in ("OpenCV", "read only", "read_only", "custom data configuration"):
        assert noise not in out.stderr, out.stderr
    wider = [f"--config={cli_runs.CONFIG}", data, "--config.model.width=16"]
    out = cli_runs.run("eval", f"--workdir={workdir}", *wider)
    assert out.returncode == 2
    [line] = out.stderr.strip().splitlines()
    assert line.startswith("error: config.model.width is 16, but the run in"), line
