"""What the benchmark tables share: a cell trains (or resumes) in its own workdir and caches
its summary as JSON, so a stopped table continues where it stopped."""

import json
import os
import time

from cps_jax.trainer import Trainer


def source_commit() -> str:
    """The commit of the code that trains the cells (recorded in each cell's summary)."""
    import subprocess

    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=os.path.dirname(os.path.abspath(__file__)),
            capture_output=True,
            text=True,
            check=True,
        )
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _write_json(path: str, payload) -> None:
    with open(path + ".tmp", "w") as f:
        json.dump(payload, f, indent=1)
    os.replace(path + ".tmp", path)  # atomic: a killed run never leaves half a file


def _read_summary(path: str, steps: int):
    if not os.path.exists(path):
        return None
    with open(path) as f:
        summary = json.load(f)
    return summary if summary["steps"] == steps else None


def finished_cell(config, workdir: str, results_path: str = "", reuse_path: str = ""):
    """The cached summary of a finished cell (its `cell.json`, `results_path` or `reuse_path`),
    else None."""
    for path in filter(None, (os.path.join(workdir, "cell.json"), results_path, reuse_path)):
        summary = _read_summary(path, config.total_steps)
        if summary is not None:
            return summary
    return None


def run_cell(config, workdir: str, data, results_path: str = "", reuse_path: str = "", extra=None) -> dict:
    """Trains (or resumes) one cell; its summary is cached in `cell.json` (and `results_path`).
    `extra`: more fields for the summary."""
    summary_path = os.path.join(workdir, "cell.json")
    summary = finished_cell(config, workdir, results_path, reuse_path)
    if summary is not None:
        return summary
    # The time of earlier, stopped attempts counts too: a resumed cell's "seconds" is its whole
    # training time, not that of its last attempt.
    spent_path = os.path.join(workdir, "cell_seconds.json")
    spent = 0.0
    if os.path.exists(spent_path):
        with open(spent_path) as f:
            spent = json.load(f)["seconds"]
    start = time.perf_counter()
    try:
        trainer = Trainer(config, workdir, data=data)
        results = trainer.train()
    finally:
        os.makedirs(workdir, exist_ok=True)
        _write_json(spent_path, {"seconds": spent + time.perf_counter() - start})
    summary = {
        "steps": config.total_steps,
        "seconds": spent + time.perf_counter() - start,
        "commit": source_commit(),
        **{f"miou_{net}": r["miou"] for net, r in results.items()},
        "pixel_accuracy_left": results["left"]["pixel_accuracy"],
        "class_names": list(data.class_names),
        "iou_left": [float(v) for v in results["left"]["iou"]],
        **({"pseudo": trainer.pseudo_summary} if trainer.pseudo_summary else {}),
        **(extra or {}),
    }
    _write_json(summary_path, summary)
    if results_path:
        os.makedirs(os.path.dirname(results_path), exist_ok=True)
        _write_json(results_path, summary)
    return summary


def mean_spread(values):
    mean = sum(values) / len(values)
    return mean, (max(values) - min(values)) / 2
