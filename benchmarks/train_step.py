r"""Speed and memory of one CPS train step, against this machine's own matmul ceiling.

  python benchmarks/train_step.py --config configs/demo.py [--config.model.backbone=resnet50 ...]
      [--steps 10] [--matmul_size 4096]

Prints a markdown table: median step time, images/s, FLOPs per step (XLA cost analysis of the
compiled step), achieved GFLOP/s, peak memory (XLA's buffer assignment and the process's max RSS),
and the float32 matmul GFLOP/s measured in the same run, with the ratio to it.
"""

import resource
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags
from ml_collections import config_flags

from cps_jax import parallel
from cps_jax.optim import learning_rate_schedule, make_optimizer
from cps_jax.state import create_train_state, net_graphdef
from cps_jax.train_step import make_train_step, uses_two_unlabeled, uses_unlabeled

config_flags.DEFINE_config_file("config", None, "Config file[:arg].", lock_config=True)
flags.DEFINE_integer("steps", 10, "Timed steps (after one warm-up step).")
flags.DEFINE_integer("matmul_size", 4096, "Side of the square float32 matmul for the ceiling.")
flags.DEFINE_integer("num_classes", 19, "Classes of the head.")
FLAGS = flags.FLAGS


def median_seconds(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def matmul_gflops(n: int, repeats: int = 5) -> float:
    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
    b = jax.random.normal(jax.random.key(1), (n, n), jnp.float32)
    matmul = jax.jit(jnp.matmul)
    jax.block_until_ready(matmul(a, b))
    return 2 * n**3 / median_seconds(lambda: matmul(a, b), repeats) / 1e9


def random_batch(config):
    h, w = config.data.crop_size
    rng = np.random.default_rng(0)
    n_l, n_u = config.batch_size_labeled, config.batch_size_unlabeled
    batch = {
        "image_l": rng.normal(size=(n_l, h, w, 3)).astype(np.float32),
        "mask_l": rng.integers(0, FLAGS.num_classes, size=(n_l, h, w)).astype(np.int32),
    }
    if uses_unlabeled(config.method):
        batch["image_u"] = rng.normal(size=(n_u, h, w, 3)).astype(np.float32)
    if uses_two_unlabeled(config.method):
        batch["image_u1"] = rng.normal(size=(n_u, h, w, 3)).astype(np.float32)
    return batch


def main(argv):
    del argv
    config = FLAGS.config
    mesh = parallel.make_mesh()
    replicated, sharded = parallel.replicated(mesh), parallel.batch_sharding(mesh)
    tx = make_optimizer(config.optim, config.total_steps)
    graphdef = net_graphdef(config.model, FLAGS.num_classes)
    state = jax.jit(
        lambda r: create_train_state(config.model, FLAGS.num_classes, tx, r, config.method),
        out_shardings=replicated,
    )(jax.random.key_data(jax.random.key(0)))
    step = jax.jit(
        make_train_step(
            graphdef, config, tx, learning_rate_schedule(config.optim, config.total_steps)
        ),
        in_shardings=(replicated, sharded, replicated),
        out_shardings=(replicated, replicated),
        donate_argnums=0,
    )
    batch = parallel.global_batch(random_batch(config), mesh)
    rng = jax.random.key_data(jax.random.key(0))
    compiled = step.lower(state, batch, rng).compile()
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    flops = float(cost.get("flops", float("nan")))
    memory = compiled.memory_analysis()
    xla_bytes = sum(
        getattr(memory, f, 0)
        for f in ("argument_size_in_bytes", "output_size_in_bytes", "temp_size_in_bytes")
    ) - getattr(memory, "alias_size_in_bytes", 0)

    holder = {"state": state}

    def run():
        holder["state"], metrics = compiled(holder["state"], batch, rng)
        return metrics["loss"]

    jax.block_until_ready(run())  # warm-up
    seconds = median_seconds(run, FLAGS.steps)
    ceiling = matmul_gflops(FLAGS.matmul_size)
    images = config.batch_size_labeled + config.batch_size_unlabeled
    achieved = flops / seconds / 1e9
    h, w = config.data.crop_size
    rows = [
        (
            "model",
            f"{config.model.backbone} w{config.model.width} OS{config.model.output_stride} "
            f"{config.model.dtype}",
        ),
        ("batch", f"{config.batch_size_labeled}+{config.batch_size_unlabeled} images at {h}x{w}"),
        ("devices", f"{jax.device_count()} x {jax.devices()[0].device_kind}"),
        ("median step time", f"{seconds * 1e3:.1f} ms"),
        ("images/s", f"{images / seconds:.1f}"),
        ("FLOPs per step (XLA)", f"{flops / 1e9:.2f} GFLOP"),
        ("achieved", f"{achieved:.1f} GFLOP/s"),
        (f"f32 matmul {FLAGS.matmul_size}^2 (same run)", f"{ceiling:.1f} GFLOP/s"),
        ("achieved / matmul ceiling", f"{achieved / ceiling:.2f}"),
        ("peak memory (XLA buffers)", f"{xla_bytes / 2**20:.0f} MiB"),
        (
            "peak memory (process max RSS)",
            f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10:.0f} MiB",
        ),
    ]
    print("| quantity | value |\n|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")


if __name__ == "__main__":
    flags.mark_flag_as_required("config")
    app.run(main)
