r"""How much of a CutMix image the net's deepest features see as two scenes: for each crop size,
feature stride, box count and box grid, the share of feature cells that a box edge cuts (cells
holding pixels of both images), and the share of pixels taken from the second image.

  python benchmarks/cutmix_edges.py [--sizes 64,512] [--strides 4,8,16] [--boxes 3,1] [--grids 1,16]

A cell cut by an edge mixes two scenes in one feature vector of that stride; at the benchmark's
64x64 crops the deepest features (stride 16) form a 4x4 grid. Boxes are drawn as the train step
draws them (cps_jax/cutmix.py, the base config's area range), `--samples` masks per row.
"""

import os

import jax
import ml_collections
import numpy as np
from absl import app, flags

from cps_jax import config_files, cutmix

COMMON = os.path.join(os.path.dirname(__file__), "..", "configs", "common.py")

flags.DEFINE_list("sizes", ["64", "512"], "Square crop sides (pixels).")
flags.DEFINE_list("strides", ["4", "8", "16"], "Feature strides (pixels per cell).")
flags.DEFINE_list("boxes", ["3", "1"], "Boxes per mask (3: the reference's).")
flags.DEFINE_list("grids", ["1", "16"], "Box grids (1: the reference's; cutmix.grid).")
flags.DEFINE_integer("samples", 512, "Masks drawn per row.")
FLAGS = flags.FLAGS


def cut_cells(masks: np.ndarray, stride: int) -> float:
    """The share of stride x stride cells of `masks` [N, H, W] that hold both 0s and 1s."""
    n, h, w = masks.shape
    cells = masks.reshape(n, h // stride, stride, w // stride, stride)
    return float((cells.min((2, 4)) != cells.max((2, 4))).mean())


def rows(sizes, strides, boxes, grids, samples: int):
    """[(size, boxes, grid, mixed share, {stride: cut share})] for each combination that fits."""
    base = config_files.load(COMMON).base_config().cutmix
    out = []
    for size in sizes:
        for num_boxes in boxes:
            for grid in grids:
                if size % grid:
                    continue
                config = ml_collections.ConfigDict(base.to_dict())
                config.num_boxes, config.grid = num_boxes, grid
                masks = np.asarray(cutmix.box_masks(jax.random.key(0), samples, size, size, config))
                cut = {s: cut_cells(masks, s) for s in strides if size % s == 0}
                out.append((size, num_boxes, grid, float(masks.mean()), cut))
    return out


def table(results, strides) -> str:
    head = "| crop | boxes | grid | second image | " + " | ".join(
        f"cells cut, stride {s}" for s in strides
    )
    lines = [head + " |", "|---" * (4 + len(strides)) + "|"]
    for size, num_boxes, grid, mixed, cut in results:
        cells = [f"{100 * cut[s]:.1f} %" if s in cut else "–" for s in strides]
        lines.append(
            f"| {size}x{size} | {num_boxes} | {grid} | {100 * mixed:.1f} % | " + " | ".join(cells) + " |"
        )
    return "\n".join(lines)


def main(argv):
    del argv
    ints = lambda values: [int(v) for v in values]  # noqa: E731
    strides = ints(FLAGS.strides)
    results = rows(ints(FLAGS.sizes), strides, ints(FLAGS.boxes), ints(FLAGS.grids), FLAGS.samples)
    print(table(results, strides))


if __name__ == "__main__":
    app.run(main)
