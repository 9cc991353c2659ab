"""The benchmark scripts run and print their tables (speed itself is never asserted in tests)."""

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_script(*args, env=None):
    out = subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": ROOT, **(env or {})},
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


def table_rows(stdout: str) -> dict:
    """{first cell: [other cells]} of the markdown table rows in `stdout`."""
    rows = {}
    for line in stdout.splitlines():
        if line.startswith("| ") and "---" not in line:
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            rows[cells[0]] = cells[1:]
    return rows


@pytest.mark.slow
def test_train_step_benchmark_compares_variants_side_by_side():
    stdout = run_script(
        "benchmarks/train_step.py",
        "--config=configs/demo.py:runlocal",
        "--steps=2",
        "--matmul_size=256",
        "--variant=native:model.conv_impl=xla",
        "--variant=fused:model.conv_impl=xla;fuse_pair=True",
    )
    rows = table_rows(stdout)
    assert rows[""] == ["native", "fused"], rows
    for key in (
        "median step time",
        "images/s",
        "FLOPs per step (XLA)",
        "achieved / matmul ceiling",
        "XLA buffers",
        "speedup over native",
    ):
        assert len(rows[key]) == 2, rows
    assert all(float(v.split()[0]) > 0 for v in rows["FLOPs per step (XLA)"])
    assert rows["speedup over native"][0] == "1.00x"
    assert any(k.startswith("achieved (") and len(v) == 2 for k, v in rows.items()), rows
    assert "fused: model.conv_impl=xla, fuse_pair=True" in stdout


@pytest.mark.slow
def test_conv_benchmark_lists_the_models_convolutions():
    stdout = run_script(
        "benchmarks/conv_impl.py", "--config=configs/demo.py:runlocal", "--repeats=1"
    )
    rows = [
        [c.strip() for c in line.strip().strip("|").split("|")]
        for line in stdout.splitlines()
        if line.startswith("| ") and "---" not in line
    ]
    split = next(i for i, r in enumerate(rows) if r[0] == "max pool x")
    (header, *shapes, total), (pool_header, *pools) = rows[:split], rows[split:]
    assert header[:5] == ["x", "w", "stride", "dilation", "count"] and total[0] == "**all convs**"
    assert len({tuple(r[:4]) for r in shapes}) == len(shapes)  # each distinct conv once
    # ResNet-18, deep stem: stem 3 + 8 blocks x 2 + 4 downsamples; ASPP 7; decoder 4
    assert sum(int(r[4]) for r in shapes) == int(total[4]) == 34
    assert all(float(r[5]) > 0 and float(r[6]) > 0 for r in shapes)
    found = re.search(r"faster implementation: ([\d.]+) ms; .* chooses .*: ([\d.]+) ms", stdout)
    fastest, auto = (float(v) for v in found.groups())
    times = [(int(r[4]), float(r[5]), float(r[6])) for r in shapes]
    assert fastest == pytest.approx(sum(n * min(x, p) for n, x, p in times), rel=0.01, abs=0.2)
    # auto takes one of the two per shape: between the faster and the slower of each
    assert fastest - 0.01 <= auto <= sum(n * max(x, p) for n, x, p in times) + 0.2
    # the stem's 3x3 / 2 max pool, both ways
    assert pool_header[4:6] == ["reduce-window ms", "strided views ms"]
    assert [r[1:4] for r in pools] == [["3", "2", "1"]]
    assert float(pools[0][4]) > 0 and float(pools[0][5]) > 0


@pytest.mark.slow
def test_torch_reference_benchmark_prints_its_table():
    pytest.importorskip("torch")
    stdout = run_script(
        "benchmarks/torch_reference.py",
        "--config=configs/demo.py:runlocal",
        "--steps=1",
        "--matmul_size=256",
    )
    rows = table_rows(stdout)
    for key in (
        "model",
        "batch",
        "torch",
        "eager median step time",
        "eager achieved",
        "FLOPs per step (FlopCounterMode)",
        "torch f32 matmul 256^2 (same run)",
        "eager / matmul ceiling",
    ):
        assert len(rows[key]) == 1, rows
    assert float(rows["eager median step time"][0].split()[0]) > 0
    assert float(rows["FLOPs per step (FlopCounterMode)"][0].split()[0]) > 0


@pytest.mark.slow
def test_profile_step_benchmark_sums_the_traced_ops_by_category():
    stdout = run_script(
        "benchmarks/profile_step.py", "--config=configs/demo.py:runlocal", "--steps=1", "--top=5"
    )
    rows = table_rows(stdout)
    categories = {k: v for k, v in rows.items() if len(v) == 2 and v[1].endswith("%")}
    assert categories and "category" in rows, stdout
    assert sum(float(v[1].rstrip("%")) for v in categories.values()) == pytest.approx(100, abs=0.5)
    assert float(categories["matmul / convolution"][0]) > 0
    ops = {k: v for k, v in rows.items() if len(v) == 3 and not k.startswith("op (")}
    assert 1 <= len(ops) <= 5 and all(v[0] in categories for v in ops.values()), stdout
    assert "busy time per step" in stdout and "wall step time" in stdout


def test_a_resumed_cell_counts_the_time_of_its_stopped_attempts(tmp_path, monkeypatch):
    """benchmarks/cells.run_cell: a cell stopped once and resumed reports the time of both
    attempts (a stand-in Trainer that sleeps, then stops or finishes)."""
    import time
    import types

    monkeypatch.syspath_prepend(os.path.join(ROOT, "benchmarks"))
    import cells

    attempts = []

    class Trainer:
        def __init__(self, config, workdir, data=None):
            self.pseudo_summary = None

        def train(self):
            attempts.append(time.perf_counter())
            time.sleep(0.3)
            if len(attempts) == 1:
                raise KeyboardInterrupt  # stopped, as by a signal
            return {n: {"miou": 0.5, "pixel_accuracy": 0.9, "iou": [0.5]} for n in ("left", "right")}

    monkeypatch.setattr(cells, "Trainer", Trainer)
    monkeypatch.setattr(cells, "source_commit", lambda: "abc")
    config = types.SimpleNamespace(total_steps=2)
    data = types.SimpleNamespace(class_names=["a"])
    workdir = str(tmp_path / "cell")
    with pytest.raises(KeyboardInterrupt):
        cells.run_cell(config, workdir, data)
    first = json.loads((tmp_path / "cell" / "cell_seconds.json").read_text())["seconds"]
    assert 0.3 <= first < 5
    summary = cells.run_cell(config, workdir, data, str(tmp_path / "results" / "cell.json"))
    assert len(attempts) == 2 and summary["seconds"] >= first + 0.3
    assert summary == json.loads((tmp_path / "results" / "cell.json").read_text())


@pytest.mark.slow
def test_ssl_table_trains_every_cell_once_and_resumes(tmp_path):
    out = tmp_path / "table"
    args = (
        "benchmarks/ssl_table.py",
        f"--out={out}",
        "--config=configs/ssl_table.py:optim=adamw",  # every cell gets the args after ':'
        "--tiny",
        "--steps=2",
        "--rows=supervised",
        "--fractions=1/4",
        "--seeds=0,1",
        f"--results={tmp_path / 'results'}",
        f"--source={tmp_path / 'source.cpsj'}",
    )
    env = {"CPS_DATA_DIR": str(tmp_path / "data")}
    rows = table_rows(run_script(*args, env=env))
    assert rows["Method"] == ["1/4"], rows
    cells = json.loads((out / "table.json").read_text())
    assert list(cells) == ["supervised|1/4"] and len(cells["supervised|1/4"]) == 2
    # mean ± half the spread of the two seeds' left-net mIoU
    a, b = (100 * c["miou_left"] for c in cells["supervised|1/4"])
    assert rows["Supervised baseline"] == [f"{(a + b) / 2:.2f} ± {abs(a - b) / 2:.2f}"]
    std = float(np.std([a, b], ddof=1))
    assert rows["Supervised baseline, seeds"] == [f"{a:.2f} / {b:.2f} ({std:.2f})"]
    # Each cell's summary, with its per-class IoU, in the results folder; the per-class table.
    saved = json.loads((tmp_path / "results" / "supervised__1-4__seed0.json").read_text())
    assert saved["miou_left"] == cells["supervised|1/4"][0]["miou_left"]
    assert np.nanmean(saved["iou_left"]) == pytest.approx(saved["miou_left"])
    first_class = saved["class_names"][0]
    assert float(rows[first_class][0]) == pytest.approx(
        np.mean([100 * c["iou_left"][0] for c in cells["supervised|1/4"]]), abs=0.051
    )
    assert (out / "table.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "table.md").read_text().startswith("| Method | 1/4 |")
    for seed in (0, 1):
        logged = (out / "cells" / f"supervised__1-4__seed{seed}" / "metrics.jsonl").read_text()
        first_lr = json.loads(logged.splitlines()[0])["train/lr"]
        assert first_lr == pytest.approx(0.002), first_lr  # AdamW's lr at step 0, not SGD's 0.1
    # The source backbone was trained and exported once, before the cells.
    source = tmp_path / "source.cpsj"
    assert source.exists() and (tmp_path / "source_run" / "results.json").exists()
    source_written = source.stat().st_mtime_ns
    # A finished cell is read from its cell.json, not trained again.
    cell = out / "cells" / "supervised__1-4__seed0" / "cell.json"
    summary = json.loads(cell.read_text())
    summary["miou_left"] = 0.5
    cell.write_text(json.dumps(summary))
    again = table_rows(run_script(*args, env=env))
    assert source.stat().st_mtime_ns == source_written
    # A table still running elsewhere: --report_only trains nothing and shows what is finished.
    report = [a for a in args if not a.startswith(("--fractions", "--seeds"))]
    partial = table_rows(
        run_script(*report, "--fractions=1/4,1/2", "--seeds=0,1,2", "--report_only", env=env)
    )
    assert partial["Supervised baseline"][0].endswith("(2 of 3 seeds)")
    assert partial["Supervised baseline"][1] == "–"
    assert not (out / "cells" / "supervised__1-2__seed0").exists()
    assert again["Supervised baseline"] == [f"{(50 + b) / 2:.2f} ± {abs(50 - b) / 2:.2f}"]


@pytest.mark.slow
def test_class_presence_counts_images_per_class_by_hand(tmp_path):
    """benchmarks/class_presence.py on the tiny demo scenes: every share equals the count of
    masks holding the class, read here from the data set itself."""
    from cps_jax import datasets
    from configs import demo

    env = {"CPS_DATA_DIR": str(tmp_path / "data")}
    stdout = run_script(
        "benchmarks/class_presence.py", "--config", "configs/demo.py:runlocal", "--out", str(tmp_path), env=env
    )
    config = demo.get_config("runlocal")
    config.data.data_dir = str(tmp_path / "data")
    data = datasets.load(config.data)
    held = {name: 0 for name in data.class_names}
    for i in range(len(data.train)):
        for c in set(np.unique(np.asarray(data.train[i]["mask"])).tolist()) - {255}:
            held[data.class_names[c]] += 1
    rows = table_rows(stdout)
    for name, count in held.items():
        assert rows[name] == [f"{100 * count / len(data.train):.1f} %"], name
    per_image = sum(held.values()) / len(data.train)
    assert f"{per_image:.2f} of {len(data.class_names)} classes per image" in stdout
    assert (tmp_path / "class_presence.png").stat().st_size > 0


@pytest.mark.slow
def test_cutmix_edges_counts_the_cells_a_box_edge_cuts_cell_by_cell():
    """benchmarks/cutmix_edges.py: each share of cut cells equals a cell-by-cell count over the
    same masks; boxes on the grid of the stride cut none."""
    import jax
    import ml_collections

    from cps_jax import cutmix

    stdout = run_script(
        "benchmarks/cutmix_edges.py", "--sizes", "32", "--strides", "8", "--boxes", "3",
        "--grids", "1,8", "--samples", "40",
    )
    lines = [line for line in stdout.splitlines() if line.startswith("| 32x32")]
    cells = {line.split("|")[3].strip(): line.split("|")[5].strip() for line in lines}
    config = ml_collections.ConfigDict(
        dict(num_boxes=3, area_range=(0.25, 0.5), random_aspect_ratio=True, grid=1)
    )
    masks = np.asarray(cutmix.box_masks(jax.random.key(0), 40, 32, 32, config))
    cut = sum(
        len(np.unique(mask[r : r + 8, c : c + 8])) > 1
        for mask in masks
        for r in range(0, 32, 8)
        for c in range(0, 32, 8)
    )
    assert cut > 0
    assert cells == {"1": f"{100 * cut / (40 * 16):.1f} %", "8": "0.0 %"}


@pytest.mark.slow
def test_adapt_table_reports_finished_cells_without_training(tmp_path):
    """--report_only reads the committed cell summaries: mean ± half the spread over the seeds,
    each seed's mIoU, per-class means, and each self-training round's pseudo-label figures."""
    results = tmp_path / "results"
    results.mkdir()
    names = ["road", "car"]

    def cell(row, seed, miou, iou, rounds=None):
        summary = {"steps": 900, "miou_left": miou, "pixel_accuracy_left": miou + 0.3,
                   "class_names": names, "iou_left": iou}
        if rounds:
            summary["rounds"] = rounds
        (results / f"{row}__weather__seed{seed}.json").write_text(json.dumps(summary))

    cell("source_only", 0, 0.30, [0.5, 0.1])
    cell("source_only", 1, 0.34, [0.6, 0.08])
    labels = {"portion": 0.2, "kept": 0.25, "accuracy": 0.9, "miou": 0.5, "share": [0.7, 0.3], "true_share": [0.6, 0.4]}
    rounds = [{"round": 0, "miou": 0.3}, {"round": 1, "miou": 0.41, "pseudo_labels": labels}]
    cell("self_training", 0, 0.41, [0.7, 0.12], rounds)
    stdout = run_script(
        "benchmarks/adapt_table.py", "--report_only", "--results", str(results), "--out",
        str(tmp_path / "out"), "--rows", "source_only,self_training,dacs", "--seeds", "0,1",
    )
    rows = table_rows(stdout)
    assert rows["Source only"] == ["32.00 ± 2.00", "30.00 / 34.00", "62.00 ± 2.00", "55.0", "9.0"]
    assert "| Self-training (CBST rounds) | 41.00 ± 0.00 | 41.00 | 71.00 ± 0.00 | 70.0 | 12.0 |" in stdout
    assert "DACS" not in rows  # no finished cell: left out, nothing trained
    assert not (tmp_path / "out" / "cells").exists()
    assert "| Self-training (CBST rounds) | 0 | 0 | – | – | – | – | 30.00 |" in stdout  # the teacher
    assert "| Self-training (CBST rounds) | 0 | 1 | 0.20 | 25.0% | 90.00 | 50.00 | 41.00 |" in stdout
    # each class's share of the pseudo labels beside its share of the hidden masks
    assert "| Self-training (CBST rounds) | 0 | 1 | 70.0 (60.0) | 30.0 (40.0) |" in stdout
