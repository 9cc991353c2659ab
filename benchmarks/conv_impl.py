r"""Every distinct convolution of a model, forward + backward, with each `model.conv_impl`.

  python benchmarks/conv_impl.py --config configs/demo.py [--config.model.backbone=resnet50 ...]
      [--impls xla,patches] [--repeats 5]

The convolutions are read from the jaxpr of one training forward of the config's model on a
batch of `batch_size_labeled` crops. Each one is timed as jit(grad) of <conv(x, w), g> with
respect to x and w (the work a train step does per conv), median of `repeats`. Prints a markdown
table per shape (ms per impl, GFLOP/s, speedup over the first impl) and the totals weighted by
how often each shape occurs in the net; then the stem's max pool, forward + backward, as XLA's
reduce-window and as the max of its strided views (`models.conv.max_pool`).
"""

import collections
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags
from flax import nnx
from ml_collections import config_flags

from cps_jax.models import build_model
from cps_jax.models.conv import conv_general_dilated_for, max_pool, resolve_impl

config_flags.DEFINE_config_file("config", None, "Config file[:arg].", lock_config=True)
flags.DEFINE_list("impls", ["xla", "patches"], "Implementations to compare; the first is the base.")
flags.DEFINE_integer("repeats", 5, "Timed calls per shape and impl (after a warm-up call).")
flags.DEFINE_integer("num_classes", 19, "Classes of the head.")
FLAGS = flags.FLAGS


def model_ops(config) -> tuple[collections.Counter, collections.Counter]:
    """Counters of the model's convs, by (x shape, w shape, strides, padding, dilation), and of its
    max pools, by (x shape, window, strides)."""
    h, w = config.data.crop_size
    model = build_model(
        config.model.to_dict() | {"conv_impl": "xla"}, FLAGS.num_classes, nnx.Rngs(0)
    )
    graphdef, state = nnx.split(model)
    x = jnp.zeros((config.batch_size_labeled, h, w, 3), jnp.float32)

    def forward(state, x):
        return nnx.merge(graphdef, state)(x, train=True)

    jaxpr = jax.make_jaxpr(forward)(state, x)
    found, pools = collections.Counter(), collections.Counter()

    def visit(jx):
        for eqn in jx.eqns:
            if eqn.primitive.name == "conv_general_dilated":
                p = eqn.params
                found[
                    (
                        tuple(eqn.invars[0].aval.shape),
                        tuple(eqn.invars[1].aval.shape),
                        tuple(p["window_strides"]),
                        tuple(tuple(q) for q in p["padding"]),
                        tuple(p["rhs_dilation"]),
                    )
                ] += 1
            elif eqn.primitive.name == "reduce_window_max":
                p = eqn.params
                shape = tuple(eqn.invars[0].aval.shape)
                pools[(shape, p["window_dimensions"][1], p["window_strides"][1])] += 1
            for value in eqn.params.values():  # pjit, remat, ...: nested jaxprs
                inner = getattr(value, "jaxpr", value)
                if hasattr(inner, "eqns"):
                    visit(inner)

    visit(jaxpr.jaxpr)
    return found, pools


def median_seconds(fn, args, repeats: int) -> float:
    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def time_pool(impl: str, x_shape, window: int, stride: int, repeats: int) -> float:
    """jit(grad) of <max_pool(x), g> with respect to x: the pool's work in a train step."""
    pad = (window - 1) // 2

    def pool(x):
        return max_pool(x, window, stride, pad, impl=impl)

    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=x_shape), jnp.float32)
    g = jnp.asarray(rng.normal(size=jax.eval_shape(pool, x).shape), jnp.float32)
    return median_seconds(jax.jit(jax.grad(lambda x: jnp.vdot(pool(x), g))), (x,), repeats)


def time_conv(impl: str, x_shape, w_shape, strides, padding, dilation, repeats: int):
    fn = conv_general_dilated_for(impl)
    dn = ("NHWC", "HWIO", "NHWC")

    def conv(x, w):
        return fn(x, w, strides, padding, rhs_dilation=dilation, dimension_numbers=dn)

    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=x_shape), jnp.float32)
    w = jnp.asarray(rng.normal(size=w_shape), jnp.float32)
    y_shape = jax.eval_shape(conv, x, w).shape
    g = jnp.asarray(rng.normal(size=y_shape), jnp.float32)
    step = jax.jit(jax.grad(lambda x, w: jnp.vdot(conv(x, w), g), argnums=(0, 1)))
    seconds = median_seconds(step, (x, w), repeats)
    # forward 2*M*N*K, backward twice that (input and kernel gradients)
    n, ho, wo, cout = y_shape
    kh, kw, cin, _ = w_shape
    flops = 3 * 2 * n * ho * wo * cout * kh * kw * cin
    return seconds, flops


def main(argv):
    del argv
    config = FLAGS.config
    convs, pools = model_ops(config)
    impls = FLAGS.impls
    totals = dict.fromkeys(impls, 0.0)
    total_flops = 0.0
    fastest_total = auto_total = 0.0  # each shape's faster impl; the one "auto" takes
    header = " | ".join(f"{i} ms" for i in impls)
    print(f"| x | w | stride | dilation | count | {header} | best GFLOP/s | speedup |")
    print("|---" * (6 + len(impls)) + "|")
    for (xs, ws, strides, padding, dilation), count in sorted(convs.items()):
        seconds = {}
        for impl in impls:
            seconds[impl], flops = time_conv(
                impl, xs, ws, strides, padding, dilation, FLAGS.repeats
            )
            totals[impl] += count * seconds[impl]
        total_flops += count * flops
        best = min(seconds.values())
        fastest_total += count * best
        auto_total += count * seconds.get(resolve_impl("auto", ws), float("nan"))
        cells = " | ".join(f"{seconds[i] * 1e3:.2f}" for i in impls)
        print(
            f"| {'x'.join(map(str, xs))} | {'x'.join(map(str, ws))} | {strides[0]} | "
            f"{dilation[0]} | {count} | {cells} | {flops / best / 1e9:.1f} | "
            f"{seconds[impls[0]] / seconds[impls[-1]]:.2f} |"
        )
    cells = " | ".join(f"{totals[i] * 1e3:.1f}" for i in impls)
    print(
        f"| **all convs** | | | | {sum(convs.values())} | {cells} | "
        f"{total_flops / min(totals.values()) / 1e9:.1f} | "
        f"{totals[impls[0]] / totals[impls[-1]]:.2f} |"
    )
    print(
        f"\nAll convs with each shape's faster implementation: {fastest_total * 1e3:.1f} ms; "
        f"as conv_impl=auto chooses on this backend: {auto_total * 1e3:.1f} ms."
    )
    print()
    print(
        "| max pool x | window | stride | count | reduce-window ms | strided views ms | speedup |"
    )
    print("|---" * 7 + "|")
    for (xs, window, stride), count in sorted(pools.items()):
        native = time_pool("xla", xs, window, stride, FLAGS.repeats)
        views = time_pool("patches", xs, window, stride, FLAGS.repeats)
        print(
            f"| {'x'.join(map(str, xs))} | {window} | {stride} | {count} | {native * 1e3:.2f} | "
            f"{views * 1e3:.2f} | {native / views:.2f} |"
        )


if __name__ == "__main__":
    flags.mark_flag_as_required("config")
    app.run(main)
