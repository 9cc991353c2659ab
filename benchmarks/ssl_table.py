r"""The paper's Table 1 on `synthetic_streets`: every row at 1/16, 1/8 and 1/4 of the labels.

  python benchmarks/ssl_table.py --out runs/ssl_table [--rows cps,supervised]
      [--fractions 1/16,1/8,1/4] [--seeds 0,1] [--config configs/ssl_table.py[:ARGS]]
      [--results benchmarks/results/NAME]

Rows are the names of the config module's ROWS (a method, or a method with a recipe). Each cell
(row, fraction, seed) trains in its own workdir under `<out>/cells/`, so a stopped table resumes
where it stopped (finished cells are read from their `cell.json`, a half-trained cell resumes from
its checkpoint). Prints a markdown table of the left net's validation mIoU (mean ± half the spread
over seeds, and the seeds' standard deviation in table.json) laid out like the paper's Table 1,
a per-class table of the first fraction, writes them to `<out>/table.md`, the raw numbers to
`<out>/table.json`, a plot of mIoU against the labeled fraction to `<out>/table.png`, and the
pseudo-label class shares over training of the first fraction's first seed to
`<out>/pseudo_shares.png`. With `--results DIR` every finished cell's summary (per-class IoU,
pseudo-label diagnostics) is also written to `DIR/<cell>.json`, small enough to commit, and a
cell found there is not trained again.
"""

import json
import os
import time

import jax
import numpy as np
from absl import app, flags

from cps_jax import config_files, datasets, plots
from cps_jax.data.partitions import parse_fraction
from cps_jax.logging_utils import format_seconds
from cps_jax.trainer import Trainer
from cells import finished_cell, mean_spread, run_cell  # benchmarks/cells.py

flags.DEFINE_string("out", "runs/ssl_table", "Output folder (cells, table, plot).")
flags.DEFINE_list(
    "rows",
    ["supervised", "mean_teacher", "cutmix_seg", "cps", "cps_cutmix"],
    "Rows: names of the config module's ROWS.",
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
flags.DEFINE_string("results", "", "Folder for each finished cell's summary JSON (to commit).")
flags.DEFINE_string(
    "reuse",
    "",
    "A folder of finished cells' summary JSONs (another table's --results) to take as they are, "
    "e.g. the baseline rows of a table already run; read only.",
)
flags.DEFINE_bool(
    "report_only",
    False,
    "Train nothing: report the finished cells (a table still running in the background).",
)
flags.DEFINE_string(
    "source",
    "",
    "A backbone file (.cpsj) every cell starts from (its arg pretrained=FILE); trained on the "
    "config module's source_config() and exported first if it does not exist.",
)
FLAGS = flags.FLAGS



def cell_config(module, row: str, fraction: str, seed: int, extra_arg: str = ""):
    if row not in module.ROWS:
        raise app.UsageError(f"--rows: {row!r} is not one of {sorted(module.ROWS)}")
    row_arg = module.ROWS[row][1]
    arg = ",".join(filter(None, [row_arg, f"split={fraction},seed={seed}", extra_arg]))
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


def cell_name(row: str, fraction: str, seed: int) -> str:
    return f"{row}__{fraction.replace('/', '-')}__seed{seed}"


def run_retrain_cell(module, row, fraction, seed, extra_arg, data, results_path, reuse_path):
    """Stage 2: the stage-1 row's cell (trained first if needed), its pseudo labels written as a
    folder in this cell's workdir, then supervised training on that folder."""
    from cps_jax import inference, pseudo_folder
    from cps_jax.restore import restore_nets
    from cps_jax import parallel

    first = module.RETRAIN[row]
    config1 = cell_config(module, first, fraction, seed, extra_arg)
    workdir1 = os.path.join(FLAGS.out, "cells", cell_name(first, fraction, seed))
    workdir = os.path.join(FLAGS.out, "cells", cell_name(row, fraction, seed))
    folder = os.path.join(workdir, "pseudo_labels")
    config = module.retrain_config(config1, folder)
    done = finished_cell(config, workdir, results_path, reuse_path)
    if done is not None:
        return done
    summary_file = os.path.join(folder, pseudo_folder.SUMMARY_FILE)
    if not os.path.exists(summary_file):
        run_cell(config1, workdir1, data)  # cached if finished
        _, nets = restore_nets(config1, workdir1, data.num_classes, parallel.make_mesh(), "latest")
        options = inference.InferenceOptions(scales=module.RETRAIN_SCALES, flip=True)
        print(f"    stage 2: pseudo labels of {workdir1} into {folder}", flush=True)
        pseudo_folder.write(config1, nets["left"], data, folder, options)
    with open(summary_file) as f:
        labels = json.load(f)
    print(f"    stage 2: pseudo-label mIoU {100 * labels.get('miou', float('nan')):.2f}", flush=True)
    return run_cell(
        config, workdir, datasets.load(config.data), results_path, extra={"stage2_labels": labels}
    )


def ensure_source(module, path: str) -> None:
    """Trains (or resumes) the source backbone's run next to `path` and exports its left net."""
    if os.path.exists(path):
        return
    from cps_jax.commands import export as cps_export

    config = module.source_config()
    if FLAGS.tiny:
        config = cell_config(module, "supervised", "1/1", 0)  # a tiny stand-in, same shapes
    workdir = os.path.splitext(path)[0] + "_run"
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    print(f"=== source backbone: training {workdir}, then exporting {path}", flush=True)
    Trainer(config, workdir).train()
    cps_export.export_model(config, workdir, step="latest", net="left", output=path)


def markdown_table(cells: dict, rows, fractions, names: dict) -> str:
    header = "| Method | " + " | ".join(fractions) + " |"
    lines = [header, "|---" * (len(fractions) + 1) + "|"]
    for row in rows:
        values = []
        for fraction in fractions:
            group = cells.get((row, fraction), [])
            if not group:
                values.append("–")
                continue
            mean, spread = mean_spread([100 * c["miou_left"] for c in group])
            partial = f" ({len(group)} of {len(FLAGS.seeds)} seeds)"
            values.append(f"{mean:.2f} ± {spread:.2f}" + (partial if len(group) < len(FLAGS.seeds) else ""))
        lines.append(f"| {names.get(row, row)} | " + " | ".join(values) + " |")
    return "\n".join(lines)


def seed_table(cells: dict, rows, fractions, names: dict) -> str:
    """Each cell's seeds, with their standard deviation (ddof 1)."""
    lines = ["| seeds: mIoU (std) | " + " | ".join(fractions) + " |", "|---" * (len(fractions) + 1) + "|"]
    for row in rows:
        values = []
        for fraction in fractions:
            mious = [100 * c["miou_left"] for c in cells.get((row, fraction), [])]
            if not mious:
                values.append("–")
                continue
            std = float(np.std(mious, ddof=1)) if len(mious) > 1 else 0.0
            values.append(" / ".join(f"{m:.2f}" for m in mious) + f" ({std:.2f})")
        lines.append(f"| {names.get(row, row)}, seeds | " + " | ".join(values) + " |")
    return "\n".join(lines)


def per_class_table(cells: dict, rows, fraction: str, names: dict) -> str:
    """Mean left-net IoU per class over the seeds, one column per row, at `fraction`."""
    group = {
        row: cells[row, fraction]
        for row in rows
        if cells.get((row, fraction)) and "iou_left" in cells[row, fraction][0]
    }
    if not group:
        return ""
    class_names = next(iter(group.values()))[0]["class_names"]
    lines = [
        f"| class ({fraction}) | " + " | ".join(names.get(r, r) for r in group) + " |",
        "|---" * (len(group) + 1) + "|",
    ]
    for k, name in enumerate(class_names):
        means = [np.mean([100 * c["iou_left"][k] for c in group[r]]) for r in group]
        lines.append(f"| {name} | " + " | ".join(f"{m:.1f}" for m in means) + " |")
    return "\n".join(lines)


def plot(cells: dict, methods, fractions, path: str, names: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs = [parse_fraction(f) for f in fractions]
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    for method in methods:
        done = [(x, f) for x, f in zip(xs, fractions) if cells.get((method, f))]
        if not done:
            continue
        stats = [mean_spread([100 * c["miou_left"] for c in cells[method, f]]) for _, f in done]
        ax.errorbar(
            [x for x, _ in done],
            [m for m, _ in stats],
            yerr=[s for _, s in stats],
            marker="o",
            capsize=3,
            label=names.get(method, method),
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
    if FLAGS.source:
        ensure_source(module, FLAGS.source)
        extra_arg = ",".join(filter(None, [extra_arg, f"pretrained={FLAGS.source}"]))
    names = {row: label for row, (label, _) in module.ROWS.items()}
    seeds = [int(s) for s in FLAGS.seeds]
    grid = [(m, f, s) for f in FLAGS.fractions for s in seeds for m in FLAGS.rows]
    os.makedirs(FLAGS.out, exist_ok=True)
    # The cells of one method differ only in data and seeds, so each step compiles once per table.
    jax.config.update("jax_compilation_cache_dir", os.path.join(FLAGS.out, "compile_cache"))
    data = None
    cells, start = {}, time.perf_counter()
    for i, (method, fraction, seed) in enumerate(grid):
        name = cell_name(method, fraction, seed)
        print(
            f"=== cell {i + 1}/{len(grid)}: {name} (elapsed "
            f"{format_seconds(time.perf_counter() - start)})",
            flush=True,
        )
        config = cell_config(module, method, fraction, seed, extra_arg)
        results_path = os.path.join(FLAGS.results, f"{name}.json") if FLAGS.results else ""
        reuse_path = os.path.join(FLAGS.reuse, f"{name}.json") if FLAGS.reuse else ""
        workdir = os.path.join(FLAGS.out, "cells", name)
        retrain = method in getattr(module, "RETRAIN", {})
        if FLAGS.report_only:
            if retrain:
                config = module.retrain_config(config, os.path.join(workdir, "pseudo_labels"))
            summary = finished_cell(config, workdir, results_path, reuse_path)
            if summary is None:
                print("    not finished: left out of the report", flush=True)
                continue
        elif retrain:
            data = data or datasets.load(config.data)
            summary = run_retrain_cell(
                module, method, fraction, seed, extra_arg, data, results_path, reuse_path
            )
        else:
            data = data or datasets.load(config.data)
            summary = run_cell(config, workdir, data, results_path, reuse_path)
        cells.setdefault((method, fraction), []).append(summary)
    if not cells:
        raise app.UsageError("no finished cell to report")
    table = markdown_table(cells, FLAGS.rows, FLAGS.fractions, names)
    per_class = [per_class_table(cells, FLAGS.rows, f, names) for f in FLAGS.fractions]
    classes = "\n\n".join(filter(None, [seed_table(cells, FLAGS.rows, FLAGS.fractions, names), *per_class]))
    total = sum(c["seconds"] for group in cells.values() for c in group)
    note = (
        f"Left-net validation mIoU (%), mean ± half the spread over seeds {FLAGS.seeds}; "
        f"training time of all cells {format_seconds(total)}."
    )
    print(f"\n{table}\n\n{note}\n\n{classes}", flush=True)
    with open(os.path.join(FLAGS.out, "table.md"), "w") as f:
        f.write(f"{table}\n\n{note}\n\n{classes}\n")
    with open(os.path.join(FLAGS.out, "table.json"), "w") as f:
        json.dump({f"{m}|{fr}": v for (m, fr), v in cells.items()}, f, indent=1)
    plot(cells, FLAGS.rows, FLAGS.fractions, os.path.join(FLAGS.out, "table.png"), names)
    first = {
        names.get(row, row): os.path.join(
            FLAGS.out, "cells", f"{row}__{FLAGS.fractions[0].replace('/', '-')}__seed{seeds[0]}"
        )
        for row in FLAGS.rows
    }
    class_names = next(iter(cells.values()))[0].get("class_names")
    if class_names:
        plots.pseudo_shares_figure(first, class_names, os.path.join(FLAGS.out, "pseudo_shares.png"))


if __name__ == "__main__":
    app.run(main)
