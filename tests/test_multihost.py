"""Two processes joined by jax.distributed on localhost (2 CPU devices each) train like one process
with 4 devices; their checkpoint restores and evaluates in one process; only process 0 writes logs.

The processes run tests/run_multihost.py; see there for what each one does.
"""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

import xla_flags
from cps_jax import distributed

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "tests", "run_multihost.py")
TOTAL_STEPS = 4  # configs/demo.py:runlocal; evaluation and checkpoints at steps 2 and 4

# Float32 sums in another order (gloo's all-reduce across processes) are all that differs. Four
# steps of a random-init net in train mode (batch-2 BatchNorm) amplify them: on the 2-core AMD
# EPYC CI machine the largest gap was 1.9e-5 (a BN bias of about 3e-3; same at commit 8a0f133).
ATOL, RTOL = 5e-5, 1e-4


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _env(num_devices: int) -> dict:
    return {
        **os.environ,
        "PYTHONPATH": ROOT,
        "JAX_PLATFORMS": "cpu",
        "XLA_FLAGS": xla_flags.with_devices(num_devices),
    }


def _run_all(commands, env, cwd, timeout=600):
    """Starts all commands at once; (returncode, combined output) of each. Kills all on timeout."""
    procs = [
        subprocess.Popen(
            c, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=cwd
        )
        for c in commands
    ]
    try:
        outputs = [p.communicate(timeout=timeout)[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    return [(p.returncode, out) for p, out in zip(procs, outputs)]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("multihost")
    data_dir, multi, single = str(tmp / "data"), str(tmp / "multi"), str(tmp / "single")
    port = _free_port()
    workers = _run_all(
        [
            [
                sys.executable,
                SCRIPT,
                "worker",
                str(i),
                "2",
                str(port),
                multi,
                data_dir,
                str(tmp / "multi.npz"),
            ]
            for i in range(2)
        ],
        _env(2),
        cwd=str(tmp),
    )
    for i, (code, out) in enumerate(workers):
        assert code == 0, f"process {i}:\n{out[-4000:]}"
    [(code, out)] = _run_all(
        [[sys.executable, SCRIPT, "single", single, data_dir, multi, str(tmp / "single.npz")]],
        _env(4),
        cwd=str(tmp),
    )
    assert code == 0, out[-4000:]
    load = lambda name: dict(np.load(tmp / name))  # noqa: E731
    return {
        "multi": load("multi.npz"),
        "single": load("single.npz"),
        "logs": [out for _, out in workers],
        "workdir": multi,
    }


@pytest.mark.slow
def test_two_processes_train_like_one_process_with_four_devices(runs):
    multi, single = runs["multi"], runs["single"]
    keys = [k for k in multi if k.startswith("nets")]
    assert any("['batch_stats']" in k for k in keys) and any("['params']" in k for k in keys)
    for key in keys:
        np.testing.assert_allclose(multi[key], single[key], atol=ATOL, rtol=RTOL, err_msg=key)


@pytest.mark.slow
def test_the_multi_process_checkpoint_restores_and_evaluates_in_one_process(runs):
    multi, single = runs["multi"], runs["single"]
    assert int(single["step"]) == TOTAL_STEPS
    for key in (k for k in multi if k.startswith("nets")):
        restored = single["restored" + key[len("nets") :]]
        np.testing.assert_array_equal(restored, multi[key], err_msg=key)
    for net in ("left", "right", "ensemble"):
        for metric in ("miou", "iou"):
            # The same weights evaluated by one process or by two: a pixel whose argmax flips on
            # rounding moves an IoU by ~3e-5 (measured), far below any real difference.
            np.testing.assert_allclose(
                single[f"restored_eval/{net}/{metric}"], multi[f"eval/{net}/{metric}"], rtol=2e-4
            )


@pytest.mark.slow
def test_every_process_saves_its_data_iterator_state(runs):
    checkpoints = os.path.join(runs["workdir"], "checkpoints")
    steps = sorted(int(s) for s in os.listdir(checkpoints) if s.isdigit())
    assert steps == [2, TOTAL_STEPS]
    for step in steps:
        files = sorted(os.listdir(os.path.join(checkpoints, str(step), "data")))
        states = [f for f in files if f.startswith("process_")]
        assert states == ["process_0-of-2.json", "process_1-of-2.json"], files
        positions = [
            json.load(open(os.path.join(checkpoints, str(step), "data", f))) for f in states
        ]
        assert positions == [{"next_index": step}] * 2  # each consumed `step` batches


@pytest.mark.slow
def test_only_process_0_logs_prints_and_prepares_the_data(runs):
    workdir, (log0, log1) = runs["workdir"], runs["logs"]
    lines = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
    train_steps = [line["step"] for line in lines if "train/loss" in line]
    assert train_steps == list(range(1, TOTAL_STEPS + 1))  # once each: a second writer would repeat
    assert os.path.exists(os.path.join(workdir, "images", f"eval_{TOTAL_STEPS:06d}.png"))
    assert f"step {TOTAL_STEPS}/{TOTAL_STEPS}" in log0 and "Results at step" in log0
    assert "steps/s" not in log1 and "Results at step" not in log1 and "eval @" not in log1
    # Process 0 generated the data set; process 1 waited for it and only opened it.
    assert "Downloading and preparing dataset" in log0
    assert "Downloading and preparing dataset" not in log1


# Where the distributed parameters come from (no JAX backend involved).


def test_flags_take_precedence_over_environment_variables():
    env = {"JAX_COORDINATOR_ADDRESS": "h:1", "JAX_NUM_PROCESSES": "4", "JAX_PROCESS_ID": "3"}
    assert distributed.resolve(environ=env) == {
        "coordinator_address": "h:1",
        "num_processes": 4,
        "process_id": 3,
    }
    assert distributed.resolve("g:2", 8, 5, environ=env) == {
        "coordinator_address": "g:2",
        "num_processes": 8,
        "process_id": 5,
    }
    assert distributed.resolve(environ={}) == dict.fromkeys(
        ("coordinator_address", "num_processes", "process_id")
    )


@pytest.mark.parametrize(
    "kwargs, env, message",
    [
        ({}, {"JAX_NUM_PROCESSES": "two"}, "JAX_NUM_PROCESSES: expected an integer, got 'two'"),
        (
            {"num_processes": 2, "process_id": 2},
            {},
            r"--process_id / JAX_PROCESS_ID=2 must be in \[0, 2\)",
        ),
        ({"num_processes": 0}, {}, "must be >= 1"),
    ],
)
def test_bad_parameters_are_named(kwargs, env, message):
    with pytest.raises(ValueError, match=message):
        distributed.resolve(**kwargs, environ=env)


def test_one_process_is_a_no_op():
    assert distributed.initialize(num_processes=1, environ={}) is False


def test_incomplete_flags_without_a_cluster_stop_with_a_clear_error(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "cps_jax.commands.train", "--config=configs/demo.py:runlocal",
         f"--workdir={tmp_path}", "--num_processes=2"],
        capture_output=True, text=True, cwd=ROOT, env=_env(1), timeout=300,
    )  # fmt: skip
    assert out.returncode != 0
    assert "error: distributed start-up" in out.stderr and "--coordinator_address" in out.stderr
    assert "Traceback" not in out.stderr


# Longer than gloo's fixed 30 s connection wait, a process is slow in turn: process 0 "prepares
# the data", then process 1 compiles a program with a cross-process collective; neither may fail
# the other.
_SLOW_IN_TURN = """
import sys, time
import jax, numpy as np
from jax.experimental import multihost_utils
from jax.sharding import NamedSharding, PartitionSpec as P
from cps_jax import distributed
pid, port, delay = int(sys.argv[1]), sys.argv[2], float(sys.argv[3])
distributed.initialize(f"localhost:{port}", 2, pid)
out = distributed.process_zero_first(lambda: time.sleep(delay if pid == 0 else 0) or pid, "slow")

class SlowToCompileOnProcess1:
    def __init__(self, jitted):
        self.jitted = jitted

    def lower(self, *args):
        lowered = self.jitted.lower(*args)
        class Lowered:
            def compile(_):
                time.sleep(delay if pid == 1 else 0)
                return lowered.compile()
        return Lowered()

mesh = jax.make_mesh((jax.device_count(),), ("d",))
total = distributed.CompiledTogether(
    SlowToCompileOnProcess1(jax.jit(lambda x: x.sum(), out_shardings=NamedSharding(mesh, P()))),
    "sum",
)
x = multihost_utils.host_local_array_to_global_array(np.full(1, pid + 1.0), mesh, P("d"))
assert float(total(x)) == 3.0 and float(total(x)) == 3.0
multihost_utils.sync_global_devices("after")
print("done", out, flush=True)
"""


@pytest.mark.slow
def test_a_process_slower_than_the_collectives_wait_fails_nothing(tmp_path):
    port = _free_port()
    results = _run_all(
        [[sys.executable, "-c", _SLOW_IN_TURN, str(i), str(port), "33"] for i in range(2)],
        _env(1),
        cwd=str(tmp_path),
        timeout=300,
    )
    for i, (code, out) in enumerate(results):
        assert code == 0 and f"done {i}" in out, f"process {i}:\n{out[-3000:]}"


# cps-train's workdir lock on two processes: process 0 takes it, and when it cannot, both stop.
_LOCK = """
import sys
from cps_jax import distributed
from cps_jax.errors import ConfigError
from cps_jax.workdir_lock import WorkdirLock
pid, port, workdir = int(sys.argv[1]), sys.argv[2], sys.argv[3]
distributed.initialize(f"localhost:{port}", 2, pid)
try:
    lock = distributed.on_main_process(lambda: WorkdirLock(workdir).acquire(), "workdir lock")
except ConfigError as error:
    print("refused:", error, flush=True)
    sys.exit(2)
import os
print(f"holds, pid {os.getpid()}" if lock is not None else "does not hold", flush=True)
distributed.barrier("checked")
"""


@pytest.mark.slow
def test_process_0_alone_holds_the_workdir_lock_and_a_refusal_stops_every_process(tmp_path):
    from cps_jax.workdir_lock import LOCK_FILE, WorkdirLock

    def run(workdir):
        port = _free_port()
        return _run_all(
            [[sys.executable, "-c", _LOCK, str(i), str(port), workdir] for i in range(2)],
            _env(1),
            cwd=ROOT,
            timeout=300,
        )

    free = str(tmp_path / "free")
    (code0, out0), (code1, out1) = run(free)
    assert (code0, code1) == (0, 0), out0 + out1
    assert "does not hold" in out1
    holder = json.load(open(os.path.join(free, LOCK_FILE)))  # left behind: nothing released it
    assert f"holds, pid {holder['pid']}" in out0, out0
    with WorkdirLock(str(tmp_path / "busy")):
        results = run(str(tmp_path / "busy"))
    for code, out in results:
        assert code == 2 and f"refused: --workdir {tmp_path / 'busy'}: in use by" in out, out
