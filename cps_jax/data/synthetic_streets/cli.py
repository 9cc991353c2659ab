"""The command line: prepares a build of the data set ahead of training, and optionally writes
a preview of its first training scenes.

  python -m cps_jax.data.synthetic_streets --data_dir DIR [--height 96 ...] [--grid FILE.png]
"""

import argparse
import dataclasses
import time

import numpy as np
from PIL import Image

from cps_jax.data.labels import colorize
from cps_jax.data.palette import PALETTE
from cps_jax.data.synthetic_streets.dataset import Params, example_seed, prepare
from cps_jax.data.synthetic_streets.scene import DOMAINS, render_scene


def save_grid(path: str, seeds, height: int = 96, width: int = 192, domain: str = "photo") -> None:
    """Writes a preview: one row per seed, image | colourised mask."""
    rows = []
    for s in seeds:
        image, mask = render_scene(s, height, width, domain)
        rows.append(
            np.concatenate([image, np.full((height, 2, 3), 255, np.uint8), colorize(mask, PALETTE)], 1)
        )
    gap = np.full((2, rows[0].shape[1], 3), 255, np.uint8)
    Image.fromarray(np.concatenate([x for r in rows for x in (r, gap)][:-1], 0)).save(path)


def main(argv=None):
    p = argparse.ArgumentParser(description="Prepare the synthetic_streets data set (TFDS).")
    p.add_argument("--data_dir", required=True)
    for field in dataclasses.fields(Params):  # --height, --width, ... with the builder's defaults
        choices = DOMAINS if field.name == "domain" else None
        p.add_argument(
            f"--{field.name}", type=type(field.default), default=field.default, choices=choices
        )
    p.add_argument("--grid", default="", help="also write a preview PNG of 8 training scenes here")
    a = p.parse_args(argv)
    params = Params(**{field.name: getattr(a, field.name) for field in dataclasses.fields(Params)})
    t = time.time()
    b = prepare(a.data_dir, **dataclasses.asdict(params))
    print(f"{b.info.full_name} in {b.data_dir}: {time.time() - t:.1f} s")
    if a.grid:
        seeds = [example_seed(params.seed, "train", i) for i in range(8)]
        save_grid(a.grid, seeds, params.height, params.width, params.domain)


if __name__ == "__main__":
    main()
