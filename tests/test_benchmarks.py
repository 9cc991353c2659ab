"""The benchmark scripts run and print their tables (speed itself is never asserted in tests)."""
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_train_step_benchmark_prints_its_table():
    out = subprocess.run(
        [sys.executable, "benchmarks/train_step.py", "--config=configs/demo.py:runlocal",
         "--steps=2", "--matmul_size=256"],
        capture_output=True, text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": ROOT},
        timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    rows = dict(line.strip("|").split("|")[:2] for line in out.stdout.splitlines()
                if line.startswith("| ") and "---" not in line)
    rows = {k.strip(): v.strip() for k, v in rows.items()}
    for key in ("median step time", "images/s", "FLOPs per step (XLA)", "achieved",
                "achieved / matmul ceiling", "peak memory (XLA buffers)"):
        assert key in rows, rows
    assert float(rows["FLOPs per step (XLA)"].split()[0]) > 0
    assert float(rows["achieved / matmul ceiling"]) > 0
