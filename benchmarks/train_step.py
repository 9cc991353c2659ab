r"""Speed and memory of a train step, variants side by side, against the machine's matmul ceiling.

  python benchmarks/train_step.py --config configs/demo.py [--config.model.backbone=resnet50 ...]
      [--variant native:model.conv_impl=xla --variant auto:model.conv_impl=auto ...]
      [--steps 10] [--matmul_size 4096]

Each `--variant NAME:FIELD=VALUE[;FIELD=VALUE...]` overrides config fields (parsed as Python
literals when they are, e.g. `model.remat=True`); without one, the config is measured as it is.
All variants are compiled and timed in the same process, interleaved round by round (so a noisy
neighbour slows them alike), and the float32 matmul ceiling is measured in between.

Prints a markdown table, a column per variant: median step time, images/s, FLOPs per step (XLA cost
analysis of the compiled step), achieved GFLOP/s (the first variant's FLOPs over each variant's
time, so that every column is credited the same work) and its ratio to the matmul ceiling, XLA's
buffer memory (arguments + outputs + temporaries - donated aliases), and the speedup over the
first variant. The process's max RSS (all variants together) follows the table.
"""

import ast
import resource
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags
from ml_collections import config_flags

from cps_jax import methods, optim, parallel
from cps_jax.models.functional import net_graphdef
from cps_jax.state import create_train_state
from cps_jax.train_step import make_train_step

config_flags.DEFINE_config_file("config", None, "Config file[:arg].", lock_config=False)
flags.DEFINE_multi_string("variant", [], "NAME:FIELD=VALUE[;FIELD=VALUE...] config overrides.")
flags.DEFINE_integer("steps", 10, "Timed steps per variant (after one warm-up step).")
flags.DEFINE_integer("matmul_size", 4096, "Side of the square float32 matmul for the ceiling.")
flags.DEFINE_integer("num_classes", 19, "Classes of the head.")
FLAGS = flags.FLAGS


def parse_variant(spec: str):
    """'fast:model.conv_impl=auto;remat=full' -> ('fast', {'model.conv_impl': 'auto', ...})."""
    name, sep, body = spec.partition(":")
    if not sep or not name:
        raise ValueError(f"--variant {spec!r}: expected NAME:FIELD=VALUE[;FIELD=VALUE...]")
    overrides = {}
    for item in filter(None, body.split(";")):
        field, eq, value = item.partition("=")
        if not eq:
            raise ValueError(f"--variant {spec!r}: {item!r} is not FIELD=VALUE")
        try:
            overrides[field.strip()] = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError):
            overrides[field.strip()] = value.strip()
    return name, overrides


def with_overrides(config, overrides: dict):
    config = config.copy_and_resolve_references()
    for field, value in overrides.items():
        *parents, leaf = field.split(".")
        node = config
        for part in parents:
            node = node[part]
        if leaf not in node:
            raise ValueError(f"--variant: config has no field {field!r}")
        node[leaf] = type(node[leaf])(value) if isinstance(node[leaf], tuple) else value
    return config


def time_calls(fn, repeats: int) -> list:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return times


def matmul_gflops(n: int, repeats: int = 5) -> float:
    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
    b = jax.random.normal(jax.random.key(1), (n, n), jnp.float32)
    matmul = jax.jit(jnp.matmul)
    jax.block_until_ready(matmul(a, b))
    return 2 * n**3 / float(np.median(time_calls(lambda: matmul(a, b), repeats))) / 1e9


def random_batch(config):
    h, w = config.data.crop_size
    rng = np.random.default_rng(0)
    n_l, n_u = config.batch_size_labeled, config.batch_size_unlabeled
    batch = {
        "image_l": rng.normal(size=(n_l, h, w, 3)).astype(np.float32),
        "mask_l": rng.integers(0, FLAGS.num_classes, size=(n_l, h, w)).astype(np.int32),
    }
    for stream in methods.get(config.method).streams[1:]:  # the unlabeled ones: u, u1
        batch[f"image_{stream}"] = rng.normal(size=(n_u, h, w, 3)).astype(np.float32)
    return batch


class Variant:
    """One config's compiled step, its state, and what XLA says about it."""

    def __init__(self, name: str, config, mesh):
        self.name, self.config = name, config
        replicated, sharded = parallel.replicated(mesh), parallel.batch_sharding(mesh)
        batch_l = config.batch_size_labeled
        tx, schedule = optim.make(config.optim, config.total_steps, batch_l)
        graphdef = net_graphdef(config.model, FLAGS.num_classes)
        self.state = jax.jit(
            lambda r: create_train_state(config.model, FLAGS.num_classes, tx, r, config.method),
            out_shardings=replicated,
        )(jax.random.key_data(jax.random.key(0)))
        step = jax.jit(
            make_train_step(graphdef, config, tx, schedule),
            in_shardings=(replicated, sharded, replicated),
            out_shardings=(replicated, replicated),
            donate_argnums=0,
        )
        self.batch = parallel.global_batch(random_batch(config), mesh)
        self.rng = jax.random.key_data(jax.random.key(0))
        start = time.perf_counter()
        self.compiled = step.lower(self.state, self.batch, self.rng).compile()
        self.compile_seconds = time.perf_counter() - start
        cost = self.compiled.cost_analysis()
        cost = cost[0] if isinstance(cost, (list, tuple)) else cost
        self.flops = float(cost.get("flops", float("nan")))
        memory = self.compiled.memory_analysis()
        self.xla_bytes = sum(
            getattr(memory, f, 0)
            for f in ("argument_size_in_bytes", "output_size_in_bytes", "temp_size_in_bytes")
        ) - getattr(memory, "alias_size_in_bytes", 0)
        self.times = []
        jax.block_until_ready(self.run())  # warm-up

    def run(self):
        self.state, metrics = self.compiled(self.state, self.batch, self.rng)
        return metrics["loss"]


def main(argv):
    del argv
    mesh = parallel.make_mesh()
    specs = [parse_variant(s) for s in FLAGS.variant] or [("config", {})]
    variants = [Variant(name, with_overrides(FLAGS.config, o), mesh) for name, o in specs]
    ceilings = []
    for round_ in range(FLAGS.steps):  # interleaved: each round times every variant once
        for v in variants:
            v.times += time_calls(v.run, 1)
        if round_ in (0, FLAGS.steps - 1):
            ceilings.append(matmul_gflops(FLAGS.matmul_size))
    ceiling = float(np.median(ceilings))
    config = variants[0].config
    h, w = config.data.crop_size
    unlabeled_streams = len(methods.get(config.method).streams) - 1
    images = config.batch_size_labeled + unlabeled_streams * config.batch_size_unlabeled
    seconds = {v.name: float(np.median(v.times)) for v in variants}
    base = seconds[variants[0].name]
    # One amount of work for every column: the first variant's count. (XLA counts a native
    # convolution's valid taps only, but every multiply of patches, zero padding included.)
    work = variants[0].flops
    rows = {
        "median step time": lambda v: f"{seconds[v.name] * 1e3:.1f} ms",
        "images/s": lambda v: f"{images / seconds[v.name]:.1f}",
        "FLOPs per step (XLA)": lambda v: f"{v.flops / 1e9:.1f} GFLOP",
        f"achieved ({work / 1e9:.0f} GFLOP/step)": lambda v: (
            f"{work / seconds[v.name] / 1e9:.1f} GFLOP/s"
        ),
        "achieved / matmul ceiling": lambda v: f"{work / seconds[v.name] / 1e9 / ceiling:.2f}",
        "XLA buffers": lambda v: f"{v.xla_bytes / 2**20:.0f} MiB",
        "compile time": lambda v: f"{v.compile_seconds:.1f} s",
        f"speedup over {variants[0].name}": lambda v: f"{base / seconds[v.name]:.2f}x",
    }
    m = config.model
    print(
        f"{config.method}, {m.backbone} w{m.width} OS{m.output_stride}, "
        f"{config.batch_size_labeled}+{config.batch_size_unlabeled} images at {h}x{w}, "
        f"{jax.device_count()} x {jax.devices()[0].device_kind}; f32 matmul "
        f"{FLAGS.matmul_size}^2 in the same run: {ceiling:.1f} GFLOP/s\n"
    )
    print("| | " + " | ".join(v.name for v in variants) + " |")
    print("|---" * (len(variants) + 1) + "|")
    for label, cell in rows.items():
        print(f"| {label} | " + " | ".join(cell(v) for v in variants) + " |")
    for name, overrides in specs:
        print(f"\n{name}: " + (", ".join(f"{k}={v}" for k, v in overrides.items()) or "as config"))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10
    print(f"\nprocess max RSS (all variants): {rss:.0f} MiB")


if __name__ == "__main__":
    flags.mark_flag_as_required("config")
    app.run(main)
