r"""How much an image-level label says: for each class, the share of training images that hold it
(at least one pixel), and the mean number of classes per image.

  python benchmarks/class_presence.py --config configs/ssl_table.py:regime=labels [--out DIR]

Image-level labels (README, "A few pixel labels plus many image-level labels") inform a net only
where classes come and go between images: a class present in every image is a tag that rules
nothing out. Prints a markdown table and, with --out, writes it to DIR/class_presence.md and
draws DIR/class_presence.png.
"""

import os

import numpy as np
from absl import app, flags

from cps_jax import config_files, datasets

flags.DEFINE_string(
    "config",
    os.path.join(os.path.dirname(__file__), "..", "configs", "ssl_table.py") + ":regime=labels",
    "Config file with get_config(arg), optionally with ':ARGS'.",
)
flags.DEFINE_string("out", "", "Folder for class_presence.md and class_presence.png.")
FLAGS = flags.FLAGS


def presence(masks, num_classes: int) -> np.ndarray:
    """[N, C] bool: which classes each mask holds (ignore label and unknown ids skipped)."""
    rows = []
    for mask in masks:
        ids = np.unique(np.asarray(mask))
        row = np.zeros(num_classes, bool)
        row[ids[ids < num_classes]] = True
        rows.append(row)
    return np.stack(rows) if rows else np.zeros((0, num_classes), bool)


def report(present: np.ndarray, class_names) -> str:
    share = present.mean(0)
    lines = ["| class | images holding it |", "|---|---|"]
    lines += [f"| {name} | {100 * s:.1f} % |" for name, s in zip(class_names, share)]
    lines.append(
        f"\n{len(present)} images; {present.sum(1).mean():.2f} of {len(class_names)} classes per "
        f"image on average; {100 * present.all(1).mean():.1f} % of the images hold every class."
    )
    return "\n".join(lines)


def figure(present: np.ndarray, class_names, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(1.0 + 0.7 * len(class_names), 3.2))
    ax.bar(range(len(class_names)), 100 * present.mean(0), color="tab:blue")
    ax.set_xticks(range(len(class_names)), class_names, rotation=45, ha="right")
    ax.set_ylim(0, 100)
    ax.set_ylabel("images holding the class (%)")
    ax.set_title(f"{present.sum(1).mean():.2f} of {len(class_names)} classes per image")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv):
    del argv
    path, _, arg = FLAGS.config.partition(":")
    config = config_files.load(path).get_config(arg or None)
    data = datasets.load(config.data)
    masks = (data.train[i]["mask"] for i in range(len(data.train)))
    present = presence(masks, data.num_classes)
    text = report(present, data.class_names)
    print(text)
    if FLAGS.out:
        os.makedirs(FLAGS.out, exist_ok=True)
        with open(os.path.join(FLAGS.out, "class_presence.md"), "w") as f:
            f.write(text + "\n")
        figure(present, data.class_names, os.path.join(FLAGS.out, "class_presence.png"))


if __name__ == "__main__":
    app.run(main)
