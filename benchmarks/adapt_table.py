r"""Synthetic to real on `synthetic_streets` (configs/adapt.py): every adaptation row with 3 seeds,
as a practitioner's report has it (per-class IoU, mIoU, pixel accuracy on the target).

  python benchmarks/adapt_table.py --out runs/adapt --source runs/core/source.cpsj \
      [--target weather] [--rows source_only,minent,...] [--seeds 0,1,2] \
      [--results benchmarks/results/adaptation]

Rows: ROWS below. `self_training` runs `cps-self-train`'s rounds (its figure is the last round's,
each round's pseudo-label accuracy is in the cell's JSON); `translated_*` rows train on the
source repainted by a CycleGAN translator (configs/cyclegan.py, trained once per table into
`<out>/translator`, then translated into `<out>/translated`). Cells resume like those of
benchmarks/ssl_table.py.
"""

import json
import os
import time

import jax
from absl import app, flags

from cells import finished_cell, mean_spread, run_cell, source_commit  # benchmarks/cells.py
from cps_jax import config_files, datasets
from cps_jax.logging_utils import format_seconds

flags.DEFINE_string("out", "runs/adapt", "Output folder.")
flags.DEFINE_string("target", "weather", "The target domain: weather or photo.")
flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds.")
flags.DEFINE_string("source", "", "The render-domain backbone every run starts from (.cpsj).")
flags.DEFINE_string("results", "", "Folder for each finished cell's summary JSON (to commit).")
flags.DEFINE_integer("steps", None, "Override the steps of every run (checks, not results).")
flags.DEFINE_integer("rounds", 3, "Self-training rounds.")
flags.DEFINE_list("rows", None, "Rows (default: all of ROWS).")
flags.DEFINE_string(
    "translator", "", "configs/cyclegan.py args of the translator, e.g. steps=9000 (default: its own)."
)
flags.DEFINE_bool(
    "report_only", False, "Train nothing: report the finished cells (a table still running)."
)
FLAGS = flags.FLAGS

CONFIG = os.path.join(os.path.dirname(__file__), "..", "configs", "adapt.py")
CYCLEGAN = os.path.join(os.path.dirname(__file__), "..", "configs", "cyclegan.py")
# name -> (label, configs/adapt.py args, kind): kind "run" (one training run), "rounds"
# (self-training), with "translated" the source is the CycleGAN-translated one.
ROWS = {
    "source_only": ("Source only", "method=source_only", "run"),
    # The control of DACS's colour perturbation: the same perturbation on the source alone.
    "source_only_jitter": ("Source only, colour-perturbed source", "method=source_only,labeled_jitter=True", "run"),
    "minent": ("MinEnt", "method=minent", "run"),
    "adaptseg": ("AdaptSegNet (softmax discriminator)", "method=adaptseg", "run"),
    "advent": ("AdvEnt (self-information discriminator)", "method=advent", "run"),
    "dacs": ("DACS", "method=dacs", "run"),
    # DACS with the perturbation on its source images too (as on its mixed images): the first
    # teacher of the rows dacs_self_training_jitter / _quota, beside its control source_only_jitter.
    "dacs_jitter": ("DACS, colour-perturbed source", "method=dacs,labeled_jitter=True", "run"),
    "cps": ("CPS across domains", "method=cps", "run"),
    "self_training": ("Self-training (CBST rounds)", "method=source_only", "rounds"),
    "self_training_jitter": (
        "Self-training, colour-perturbed labeled images",
        "method=source_only,labeled_jitter=True",
        "rounds",
    ),
    # The students fine-tune their teachers (CBST) instead of starting from the backbone.
    "self_training_from_teacher": (
        "Self-training, students start as their teacher",
        "method=source_only,student_init=teacher",
        "rounds",
    ),
    "dacs_self_training_from_teacher": (
        "DACS, then self-training, students start as their teacher",
        "method=source_only,teacher=dacs,student_init=teacher",
        "rounds",
    ),
    # The best single method as the first teacher of the rounds.
    "dacs_self_training": ("DACS, then self-training rounds", "method=source_only,teacher=dacs", "rounds"),
    # The perturbation on every labeled image (source and pseudo-labeled target), as DACS has it on
    # its mixed images; then the same with each class's quota from the source's label shares.
    "dacs_self_training_jitter": (
        "DACS, then self-training, colour-perturbed labeled images",
        "method=source_only,teacher=dacs,labeled_jitter=True",
        "rounds",
    ),
    "dacs_self_training_quota": (
        "DACS, then self-training, colour-perturbed, class quotas from the source",
        "method=source_only,teacher=dacs,labeled_jitter=True,cbst_quota=source",
        "rounds",
    ),
    "self_training_jitter_quota": (
        "Self-training, colour-perturbed, class quotas from the source",
        "method=source_only,labeled_jitter=True,cbst_quota=source",
        "rounds",
    ),
    "translated_source_only": ("Source only, translated source", "method=source_only", "run translated"),
    "translated_source_only_jitter": (
        "Source only, translated source, colour-perturbed",
        "method=source_only,labeled_jitter=True",
        "run translated",
    ),
    "translated_self_training": ("Self-training, translated source", "method=source_only", "rounds translated"),
    "translated_self_training_quota": (
        "Self-training, translated source, class quotas from the source",
        "method=source_only,cbst_quota=source",
        "rounds translated",
    ),
    "translated_self_training_jitter_quota": (
        "Self-training, translated source, colour-perturbed, class quotas from the source",
        "method=source_only,labeled_jitter=True,cbst_quota=source",
        "rounds translated",
    ),
    # The students fine-tune their teachers (CBST), and the control of that row: the same rounds
    # with p = 0 (only the pixels in each class's top confidence bin keep their pseudo label), so
    # the students train as long on the same source and images with almost no pseudo label.
    "translated_self_training_jitter_quota_from_teacher": (
        "Self-training, translated source, colour-perturbed, class quotas from the source, students start as their teacher",
        "method=source_only,labeled_jitter=True,cbst_quota=source,student_init=teacher",
        "rounds translated",
    ),
    "translated_rounds_without_labels_from_teacher": (
        "Control: the same rounds without pseudo labels (p = 0), students start as their teacher",
        "method=source_only,labeled_jitter=True,cbst_quota=source,student_init=teacher,cbst_start=0.0,cbst_step=0.0",
        "rounds translated",
    ),
    # The practitioner's whole loop: translate, DACS (on the translated, perturbed source), then
    # self-training rounds with the source's class quotas; round 0 is the DACS teacher.
    "translated_dacs_self_training_quota": (
        "DACS, then self-training, translated source, colour-perturbed, class quotas from the source",
        "method=source_only,teacher=dacs,labeled_jitter=True,cbst_quota=source",
        "rounds translated",
    ),
    "target_supervised": ("Target-supervised (upper bound)", "method=supervised,target_labels=True", "run"),
}


def cell_config(row: str, seed: int, translated: str = ""):
    module = config_files.load(CONFIG)
    args = [ROWS[row][1], f"seed={seed}", f"target={FLAGS.target}"]
    if FLAGS.source:
        args.append(f"pretrained={FLAGS.source}")
    if translated:
        args.append(f"source={translated}")
    config = module.get_config(",".join(args))
    if FLAGS.steps:
        config.total_steps = config.eval_every = config.checkpoint_every = FLAGS.steps
        config.log_every = max(1, FLAGS.steps // 4)
    return config


def translator_args() -> str:
    """The translator's configs/cyclegan.py args (recorded in each translated cell's summary)."""
    return ",".join(filter(None, [f"target={FLAGS.target}", FLAGS.translator]))


def translated_source() -> str:
    """The render source repainted in the target's style (trained and written once)."""
    from cps_jax.commands import cyclegan_train, cyclegan_translate

    out = os.path.join(FLAGS.out, "translated")
    if os.path.exists(os.path.join(out, "classes.json")):
        return out
    config = config_files.load(CYCLEGAN).get_config(translator_args())
    if FLAGS.steps:
        config.cyclegan.optim.total_steps = FLAGS.steps
    workdir = os.path.join(FLAGS.out, "translator")
    cyclegan_train.train(config, workdir)
    cyclegan_translate.translate(workdir, out + ".partial")
    os.replace(out + ".partial", out)
    return out


def run_rounds_cell(config, workdir: str, results_path: str, extra=None) -> dict:
    """Self-training rounds as one cell: its summary is the last round's, with every round's."""
    from cps_jax.commands import self_train

    cached = finished_cell(config, workdir, results_path)
    if cached is not None:
        return cached
    start = time.perf_counter()
    rounds = self_train.self_train(config, workdir, FLAGS.rounds)
    last = os.path.join(workdir, f"round_{FLAGS.rounds}", "run", "results.json")
    with open(last) as f:
        results = json.load(f)
    summary = {
        "steps": config.total_steps,
        "seconds": time.perf_counter() - start,
        "commit": source_commit(),
        "miou_left": results["left"]["miou"],
        "pixel_accuracy_left": results["left"]["pixel_accuracy"],
        "class_names": results["class_names"],
        "iou_left": results["left"]["iou"],
        "rounds": rounds,
        **(extra or {}),
    }
    for path in filter(None, (os.path.join(workdir, "cell.json"), results_path)):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            json.dump(summary, f, indent=1)
    return summary


def finished_summary(workdir: str, results_path: str):
    """A finished cell's summary (its results JSON, else its workdir's cell.json), or None."""
    for path in filter(None, (results_path, os.path.join(workdir, "cell.json"))):
        if os.path.exists(path):
            with open(path) as f:
                return json.load(f)
    return None


def main(argv):
    del argv
    rows = FLAGS.rows or list(ROWS)
    os.makedirs(FLAGS.out, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", os.path.join(FLAGS.out, "compile_cache"))
    cells, start = {}, time.perf_counter()
    grid = [(row, int(seed)) for seed in FLAGS.seeds for row in rows]
    for i, (row, seed) in enumerate(grid):
        name = f"{row}__{FLAGS.target}__seed{seed}"
        print(f"=== cell {i + 1}/{len(grid)}: {name} ({format_seconds(time.perf_counter() - start)})", flush=True)
        kind = ROWS[row][2]
        workdir = os.path.join(FLAGS.out, "cells", name)
        results_path = os.path.join(FLAGS.results, f"{name}.json") if FLAGS.results else ""
        if FLAGS.report_only:
            summary = finished_summary(workdir, results_path)
            if summary is not None:
                cells.setdefault(row, []).append(dict(summary, seed=seed))
            continue
        translated = translated_source() if "translated" in kind else ""
        extra = {"translator": translator_args()} if translated else None
        config = cell_config(row, seed, translated)
        if kind.startswith("rounds"):
            summary = run_rounds_cell(config, workdir, results_path, extra)
        else:
            summary = run_cell(config, workdir, datasets.load(config.data), results_path, extra=extra)
        cells.setdefault(row, []).append(dict(summary, seed=seed))
    if not cells:
        print("no finished cell to report", flush=True)
        return
    print("\n" + report(cells, rows), flush=True)
    with open(os.path.join(FLAGS.out, "table.md"), "w") as f:
        f.write(report(cells, rows) + "\n")


def report(cells: dict, rows) -> str:
    """mIoU and pixel accuracy (mean ± half the spread over seeds), per-class IoU (mean), and the
    self-training rounds' pseudo-label accuracy against the hidden target masks."""
    class_names = next(iter(cells.values()))[0]["class_names"]
    head = "| Method | mIoU | seeds | pixel acc. | " + " | ".join(class_names) + " |"
    lines = [head, "|---" * (len(class_names) + 4) + "|"]
    for row in rows:
        group = cells.get(row)
        if not group:
            continue
        miou = mean_spread([100 * c["miou_left"] for c in group])
        acc = mean_spread([100 * c["pixel_accuracy_left"] for c in group])
        per_class = [sum(100 * c["iou_left"][k] for c in group) / len(group) for k in range(len(class_names))]
        lines.append(
            f"| {ROWS[row][0]} | {miou[0]:.2f} ± {miou[1]:.2f} | "
            + " / ".join(f"{100 * c['miou_left']:.2f}" for c in group)
            + f" | {acc[0]:.2f} ± {acc[1]:.2f} | "
            + " | ".join(f"{v:.1f}" for v in per_class)
            + " |"
        )
    rounds = [(row, c) for row in rows for c in cells.get(row, []) if "rounds" in c]
    if rounds:
        lines += ["", "| self-training | seed | round | p | kept | pseudo-label acc. | pseudo-label mIoU | student mIoU |", "|---" * 8 + "|"]
        for row, cell in rounds:
            # round 0: the first teacher, which the students read against
            lines.append(f"| {ROWS[row][0]} | {cell['seed']} | 0 | – | – | – | – | {100 * cell['rounds'][0]['miou']:.2f} |")
            for entry in cell["rounds"][1:]:
                labels = entry["pseudo_labels"]
                lines.append(
                    f"| {ROWS[row][0]} | {cell['seed']} | {entry['round']} | {labels['portion']:.2f} | {100 * labels['kept']:.1f}% | "
                    f"{100 * labels.get('accuracy', float('nan')):.2f} | {100 * labels.get('miou', float('nan')):.2f} | "
                    f"{100 * entry['miou']:.2f} |"
                )
    shares = [(row, c, e) for row, c in rounds for e in c["rounds"][1:] if "true_share" in e["pseudo_labels"]]
    if shares:  # the collapse detector: a class far above its true share is being over-predicted
        lines += ["", "| pseudo-label class share % (true share) | seed | round | " + " | ".join(class_names) + " |"]
        lines.append("|---" * (len(class_names) + 3) + "|")
        for row, cell, entry in shares:
            labels = entry["pseudo_labels"]
            cells_text = (f"{100 * a:.1f} ({100 * b:.1f})" for a, b in zip(labels["share"], labels["true_share"]))
            lines.append(f"| {ROWS[row][0]} | {cell['seed']} | {entry['round']} | " + " | ".join(cells_text) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    app.run(main)
