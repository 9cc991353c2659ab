"""Training the translator on two image sources, previews, and translating a labeled data set.

The two sources are the train splits of `config.data.source` (S) and `config.data` (T): images
only, no labels. A step's batch is `cyclegan.batch_size` random crops of `cyclegan.image_size`
from each, scaled to [-1, 1], drawn from (seed, step) alone, so a resumed run sees the same
batches. At each `eval_every`, a preview grid (rows: source, G(source), F(G(source)), target,
F(target)) goes to WORKDIR/previews/step_N.png and to TensorBoard; checkpoints (Orbax) hold the
four nets, their optimizer states and both history pools.

`translate_folder` repaints every image of a labeled data set with G and writes it as an
image_folder with the masks and ids unchanged: a source like any other for the adaptation
methods (config.data.source.name=image_folder, .folder=OUT).
"""

import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from cps_jax import checkpointing, datasets, logging_utils, plots, pseudo_folder
from cps_jax.cyclegan import nets, optim, state as cg_state, step as cg_step
from cps_jax.data.png import save_png

PREVIEW_EXAMPLES = 4


def to_unit(images_uint8) -> np.ndarray:
    return np.asarray(images_uint8, np.float32) / 127.5 - 1.0


def to_uint8(images) -> np.ndarray:
    return np.clip(np.round((np.asarray(images, np.float32) + 1.0) * 127.5), 0, 255).astype(np.uint8)


def random_crops(source, rng: np.random.Generator, count: int, size: int) -> np.ndarray:
    """`count` random size x size crops (an image smaller than `size` is padded by reflection)."""
    out = []
    for _ in range(count):
        image, _ = pseudo_folder.image_and_mask(source[int(rng.integers(len(source)))])
        h, w = image.shape[:2]
        if h < size or w < size:
            image = np.pad(image, ((0, max(size - h, 0)), (0, max(size - w, 0)), (0, 0)), mode="reflect")
            h, w = image.shape[:2]
        y, x = int(rng.integers(h - size + 1)), int(rng.integers(w - size + 1))
        out.append(image[y : y + size, x : x + size])
    return to_unit(np.stack(out))


def batch_at(data, step: int, config) -> dict:
    """The batch of `step`: a pure function of (seed, step)."""
    rng = np.random.default_rng([int(config.seed), int(step)])
    cfg = config.cyclegan
    return {
        "source": random_crops(data.source.train, rng, cfg.batch_size, cfg.image_size),
        "target": random_crops(data.train, rng, cfg.batch_size, cfg.image_size),
    }


def preview(params: dict, source, target) -> tuple[np.ndarray, dict]:
    """The grid (rows: source, G(source), F(G(source)), target, F(target)) as uint8, and the
    reconstruction errors of the shown images."""
    fake_t = nets.translate(params["G"], source)
    back = nets.translate(params["F"], fake_t)
    fake_s = nets.translate(params["F"], target)
    rows = [source, fake_t, back, target, fake_s]
    grid = np.concatenate([np.concatenate(list(to_uint8(r)), axis=1) for r in rows], axis=0)
    return grid, {"preview_rec_error_s": float(jnp.mean(jnp.abs(back - source)))}


def train(config, workdir: str, until: int | None = None) -> dict:
    """Trains (or resumes) the translator to cyclegan.optim.total_steps; returns the last
    logged metrics."""
    cfg = config.cyclegan
    data = datasets.load_shared(config.data)
    if data.source is None:
        raise ValueError("the translator needs two domains: set config.data.source.name")
    tx, schedule = optim.make(cfg.optim)
    checkpointer = checkpointing.Checkpointer(os.path.join(workdir, "checkpoints"), keep=1)
    abstract = cg_state.abstract_state(cfg, tx)
    restored = checkpointer.restore_latest(abstract)
    if restored is None:
        state = cg_state.init_state(cfg, tx, jax.random.key(int(config.seed)))
        start = 0
    else:
        start, state = restored
        print(f"Resuming the translator at step {start}", flush=True)
    step_fn = jax.jit(cg_step.make_train_step(cfg, tx, schedule), donate_argnums=0)
    key = jax.random.key(int(config.seed) + 1)
    total = int(cfg.optim.total_steps) if until is None else min(until, int(cfg.optim.total_steps))
    fixed = _preview_batch(data, cfg.image_size)
    logger = logging_utils.MetricLogger(workdir)
    progress = logging_utils.Progress(start, int(cfg.optim.total_steps))
    metrics, last = {}, {}
    os.makedirs(os.path.join(workdir, "previews"), exist_ok=True)
    try:
        for step in range(start, total):
            state, metrics = step_fn(state, batch_at(data, step, config), jax.random.fold_in(key, step))
            done = step + 1
            if done % config.log_every == 0 or done == total:
                last = {k: float(v) for k, v in jax.device_get(metrics).items()}
                logger.write(done, {f"train/{k}": v for k, v in last.items()})
                print(progress.line(done, last), flush=True)
            if done % config.eval_every == 0 or done == total:
                params = {name: state.nets[name]["params"] for name in ("G", "F")}
                grid, errors = preview(params, *fixed)
                save_png(os.path.join(workdir, "previews", f"step_{done}.png"), grid)
                logger.write(done, {f"eval/{k}": v for k, v in errors.items()})
                logger.image("previews", grid, done)
                last.update(errors)
            if done % config.checkpoint_every == 0 or done == total:
                checkpointer.save(done, state)
        checkpointer.manager.wait_until_finished()
    finally:
        logger.close()
    # The cycle's reconstruction errors (mean |F(G(s)) - s|, |G(F(t)) - t|) over training.
    curves = ("train/rec_error_s", "train/rec_error_t")
    plots.scalar_curves_figure(workdir, curves, os.path.join(workdir, "rec_error.png"), "mean |x - rec(x)|")
    return last


def _preview_batch(data, size: int):
    """Fixed examples for the previews: the first images of each domain, center crops."""

    def crops(source):
        out = []
        for i in range(min(PREVIEW_EXAMPLES, len(source))):
            image, _ = pseudo_folder.image_and_mask(source[i])
            h, w = image.shape[:2]
            y, x = max((h - size) // 2, 0), max((w - size) // 2, 0)
            out.append(image[y : y + size, x : x + size])
        return to_unit(np.stack(out))

    return crops(data.source.train), crops(data.train)


def restore_generator(config, workdir: str, name: str = "G") -> dict:
    """The params of generator `name` of the translator's latest checkpoint."""
    cfg = config.cyclegan
    tx, _ = optim.make(cfg.optim)
    checkpointer = checkpointing.Checkpointer(os.path.join(workdir, "checkpoints"), read_only=True)
    restored = checkpointer.restore_latest(cg_state.abstract_state(cfg, tx))
    if restored is None:
        raise FileNotFoundError(f"{workdir}: no translator checkpoint")
    return restored[1].nets[name]["params"]


def translate_image(params_g, image_uint8: np.ndarray) -> np.ndarray:
    """One image through G, padded by reflection to a multiple of 4 and cropped back."""
    h, w = image_uint8.shape[:2]
    ph, pw = -h % 4, -w % 4
    padded = np.pad(image_uint8, ((0, ph), (0, pw), (0, 0)), mode="reflect")
    out = nets.translate(params_g, to_unit(padded)[None])
    return to_uint8(out[0, :h, :w])


def translate_folder(params_g, data, out_dir: str, *, progress: bool = True) -> dict:
    """data's train and validation splits repainted by G into an image_folder (masks, ids and
    classes unchanged)."""
    pseudo_folder.write_class_file(out_dir, data)
    start, count = time.perf_counter(), 0
    for sub, source in (("", data.train), ("val", data.validation)):
        for i in range(len(source)):
            example = source[i]
            image, mask = pseudo_folder.image_and_mask(example)
            ident = pseudo_folder.ident_of(example)
            pseudo_folder.write_png(os.path.join(out_dir, sub, "images", ident + ".png"), translate_image(params_g, image))
            pseudo_folder.write_png(os.path.join(out_dir, sub, "masks", ident + ".png"), mask)
            count += 1
            if progress and count % 200 == 0:
                print(f"  translated {count} images ({count / (time.perf_counter() - start):.1f}/s)", flush=True)
    return {"images": count, "train": len(data.train), "validation": len(data.validation)}
