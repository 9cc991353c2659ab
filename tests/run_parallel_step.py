"""One Trainer step and one evaluation on an 8-device mesh and on a 1-device mesh, same inputs.

Run by tests/test_parallel.py in a fresh interpreter whose XLA_FLAGS force 8 CPU devices (the test
session itself has one). Writes OUT.npz: the initial state, both updated states and metrics, both
evaluations' confusion-derived figures, and the messages of the errors that bad batch sizes raise.

  python tests/run_parallel_step.py OUT.npz
"""

import sys

import jax
import numpy as np

from cps_jax import datasets, evaluate, parallel
from cps_jax.trainer import Trainer
from configs import demo

NUM_CLASSES = 5
GLOBAL_BATCH = 8


def tiny_data(num_validation=12, height=32, width=64):
    """An in-memory data set: the Trainer needs its classes, the evaluator reads `validation`."""
    rng = np.random.default_rng(1)
    validation = []
    for i in range(num_validation):
        mask = rng.integers(0, NUM_CLASSES, (height, width, 1)).astype(np.uint8)
        image = (mask * 40 + rng.integers(0, 40, (height, width, 3))).astype(np.uint8)
        validation.append({"image": image, "mask": mask, "id": f"val_{i}".encode()})
    return datasets.SegmentationData(
        train=[],
        validation=validation,
        class_names=[f"class_{c}" for c in range(NUM_CLASSES)],
        palette=np.zeros((NUM_CLASSES, 3), np.uint8),
        name="tiny",
    )


def global_batch_numpy(size=32):
    """Structured images (the class shows in the pixels) with some ignored pixels (255)."""
    rng = np.random.default_rng(0)
    mask = rng.integers(0, NUM_CLASSES, (GLOBAL_BATCH, size, size)).astype(np.int32)
    mask[:, :2] = 255
    image = rng.normal(size=(GLOBAL_BATCH, size, size, 3)).astype(np.float32) * 0.3
    image += mask[..., None].clip(0, NUM_CLASSES) * 0.2
    unlabeled = rng.normal(size=(GLOBAL_BATCH, size, size, 3)).astype(np.float32)
    return {"image_l": image, "mask_l": mask, "image_u": unlabeled}


def flat(tree, prefix):
    leaves = jax.tree_util.tree_leaves_with_path(jax.device_get(tree))
    return {prefix + jax.tree_util.keystr(path): np.asarray(v) for path, v in leaves}


def config_for(batch=GLOBAL_BATCH):
    config = demo.get_config("runlocal")
    config.batch_size_labeled = config.batch_size_unlabeled = batch
    config.eval_batch_size = 8
    return config


def run(devices, workdir, data, initial_state=None):
    mesh = parallel.make_mesh(devices)
    trainer = Trainer(config_for(), workdir, mesh=mesh, data=data)
    if initial_state is None:
        state = trainer.initial_state()
    else:  # the same numbers, placed on this mesh (spares compiling the initialisation again)
        state = jax.device_put(initial_state, parallel.replicated(mesh))
    host_initial = jax.device_get(state)  # before the step donates `state`
    rng = jax.random.key_data(jax.random.key(3))
    batch = parallel.global_batch(global_batch_numpy(), mesh)
    assert len(batch["image_l"].sharding.device_set) == len(devices)
    new_state, _, metrics = trainer.step_fn(state, trainer.initial_health(), batch, rng)
    results, _ = trainer.evaluator.run(new_state.nets)
    out = {**flat(host_initial, "initial"), **flat(new_state, "state"), **flat(metrics, "metrics")}
    for net, r in results.items():
        for key in ("miou", "pixel_accuracy", "iou"):
            out[f"eval/{net}/{key}"] = np.asarray(r[key])
    return out, host_initial


def error_message(fn) -> str:
    try:
        fn()
    except ValueError as error:
        return str(error)
    return ""


def main(out_path):
    assert jax.device_count() == 8, jax.devices()
    data = tiny_data()
    sharded, initial_state = run(jax.devices(), out_path + ".ckpt8", data)
    single, _ = run(jax.devices()[:1], out_path + ".ckpt1", data, initial_state)
    mesh = parallel.make_mesh()
    errors = {
        "labeled": error_message(lambda: Trainer(config_for(6), out_path + ".e", mesh=mesh)),
        "rows": error_message(
            lambda: parallel.global_batch({"image_l": np.zeros((12, 2, 2, 3))}, mesh)
        ),
    }
    np.savez(
        out_path,
        **{f"8/{k}": v for k, v in sharded.items()},
        **{f"1/{k}": v for k, v in single.items()},
        **{f"error/{k}": np.asarray(v) for k, v in errors.items()},
    )


if __name__ == "__main__":
    main(sys.argv[1])
