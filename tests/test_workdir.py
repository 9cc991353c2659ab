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
