r"""The paper's Table 1 on `synthetic_streets`: every method at 1/16, 1/8 and 1/4 of the labels.

  python benchmarks/ssl_table.py --out runs/ssl_table [--methods cps,supervised]
      [--fractions 1/16,1/8,1/4] [--seeds 0,1] [--config configs/ssl_table.py[:ARGS]]

Each cell (method, fraction, seed) trains in its own workdir under `<out>/cells/`, so a stopped
table resumes where it stopped (finished cells are read from their `cell.json`, a half-trained cell
resumes from its checkpoint). Prints a markdown table of the left net's validation mIoU (mean ± half
the spread over seeds) laid out like the paper's Table 1, writes it to `<out>/table.md`, the raw
numbers to `<out>/table.json`, and a plot of mIoU against the labeled fraction to `<out>/table.png`.
"""

import json
import os
import time

import jax
from absl import app, flags

from cps_jax import config_files, datasets
from cps_jax.data.partitions import parse_fraction
from cps_jax.logging_utils import format_seconds
from cps_jax.trainer import Trainer

flags.DEFINE_string("out", "runs/ssl_table", "Output folder (cells, table, plot).")
flags.DEFINE_list(
    "methods", ["supervised", "mean_teacher", "cutmix_seg", "cps", "cps_cutmix"], "Methods (rows)."
)
flags.DEFINE_list("fractions", ["1/16", "1/8", "1/4"], "Labeled fractions (columns).")
flags.DEFINE_list("seeds", ["0", "1"], "Seeds: each one draws its own labeled subset and init.")
flags.DEFINE_string(
    "config",
    os.path.join(os.path.dirname(__file__), "..", "configs", "ssl_table.py"),
    "Config file with get_config(arg), optionally with ':ARGS' that every cell's arg gets too.",
)
flags.DEFINE_integer("steps", None, "Override total_steps (and the eval interval) of every cell.")
flags.DEFINE_bool("tiny", False, "Tiny images and model: checks the script, not the methods.")
FLAGS = flags.FLAGS

NAMES = {
    "supervised": "Supervised baseline",
    "mean_teacher": "Mean Teacher",
    "cutmix_seg": "CutMix-Seg",
    "cps": "CPS",
    "cps_cutmix": "CPS + CutMix",
}


def cell_config(module, method: str, fraction: str, seed: int, extra_arg: str = ""):
    arg = ",".join(filter(None, [f"method={method},split={fraction},seed={seed}", extra_arg]))
    config = module.get_config(arg)
    if FLAGS.tiny:
        config.data.height, config.data.width = 32, 64
        config.data.num_train, config.data.num_validation = 64, 8
        config.data.crop_size = (32, 32)
        config.model.width, config.model.aspp_channels = 8, 16
        config.model.low_level_channels, config.model.decoder_channels = 8, 16
        config.batch_size_labeled = config.batch_size_unlabeled = 2
        config.eval_batch_size = 4
    if FLAGS.steps:
        config.total_steps = config.eval_every = config.checkpoint_every = FLAGS.steps
        config.log_every = max(1, FLAGS.steps // 4)
    return config


def run_cell(config, workdir: str, data) -> dict:
    """Trains (or resumes) one cell; its summary is cached in `cell.json`."""
    summary_path = os.path.join(workdir, "cell.json")
    if os.path.exists(summary_path):
        with open(summary_path) as f:
            summary = json.load(f)
        if summary["steps"] == config.total_steps:
            return summary
    start = time.perf_counter()
    results = Trainer(config, workdir, data=data).train()
    summary = {
        "steps": config.total_steps,
        "seconds": time.perf_counter() - start,
        **{f"miou_{net}": r["miou"] for net, r in results.items()},
    }
    with open(summary_path + ".tmp", "w") as f:
        json.dump(summary, f)
    os.replace(summary_path + ".tmp", summary_path)  # atomic: a killed run never leaves half a file
    return summary


def mean_spread(values):
    mean = sum(values) / len(values)
    return mean, (max(values) - min(values)) / 2


def markdown_table(cells: dict, methods, fractions) -> str:
    header = "| Method | " + " | ".join(fractions) + " |"
    lines = [header, "|---" * (len(fractions) + 1) + "|"]
    for method in methods:
        row = []
        for fraction in fractions:
            mean, spread = mean_spread([100 * c["miou_left"] for c in cells[method, fraction]])
            row.append(f"{mean:.2f} ± {spread:.2f}")
        lines.append(f"| {NAMES.get(method, method)} | " + " | ".join(row) + " |")
    return "\n".join(lines)


def plot(cells: dict, methods, fractions, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs = [parse_fraction(f) for f in fractions]
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    for method in methods:
        stats = [mean_spread([100 * c["miou_left"] for c in cells[method, f]]) for f in fractions]
        ax.errorbar(
            xs,
            [m for m, _ in stats],
            yerr=[s for _, s in stats],
            marker="o",
            capsize=3,
            label=NAMES.get(method, method),
        )
    ax.set_xscale("log", base=2)
    ax.set_xticks(xs, fractions)
    ax.set_xlabel("labeled fraction of synthetic_streets train")
    ax.set_ylabel("validation mIoU (%)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv):
    del argv
    path, _, extra_arg = FLAGS.config.partition(":")
    module = config_files.load(path)
    seeds = [int(s) for s in FLAGS.seeds]
    grid = [(m, f, s) for f in FLAGS.fractions for s in seeds for m in FLAGS.methods]
    os.makedirs(FLAGS.out, exist_ok=True)
    # The cells of one method differ only in data and seeds, so each step compiles once per table.
    jax.config.update("jax_compilation_cache_dir", os.path.join(FLAGS.out, "compile_cache"))
    data = datasets.load(
        cell_config(module, FLAGS.methods[0], FLAGS.fractions[0], 0, extra_arg).data
    )
    cells, start = {}, time.perf_counter()
    for i, (method, fraction, seed) in enumerate(grid):
        name = f"{method}__{fraction.replace('/', '-')}__seed{seed}"
        print(
            f"=== cell {i + 1}/{len(grid)}: {name} (elapsed "
            f"{format_seconds(time.perf_counter() - start)})",
            flush=True,
        )
        config = cell_config(module, method, fraction, seed, extra_arg)
        summary = run_cell(config, os.path.join(FLAGS.out, "cells", name), data)
        cells.setdefault((method, fraction), []).append(summary)
    table = markdown_table(cells, FLAGS.methods, FLAGS.fractions)
    total = sum(c["seconds"] for group in cells.values() for c in group)
    note = (
        f"Left-net validation mIoU (%), mean ± half the spread over seeds {FLAGS.seeds}; "
        f"training time of all cells {format_seconds(total)}."
    )
    print(f"\n{table}\n\n{note}", flush=True)
    with open(os.path.join(FLAGS.out, "table.md"), "w") as f:
        f.write(f"{table}\n\n{note}\n")
    with open(os.path.join(FLAGS.out, "table.json"), "w") as f:
        json.dump({f"{m}|{fr}": v for (m, fr), v in cells.items()}, f, indent=1)
    plot(cells, FLAGS.methods, FLAGS.fractions, os.path.join(FLAGS.out, "table.png"))


if __name__ == "__main__":
    app.run(main)
