"""CycleGAN's networks (NHWC, images in [-1, 1]), as the official PyTorch code builds them
(pytorch-CycleGAN-and-pix2pix, models/networks.py: ResnetGenerator, NLayerDiscriminator).

Generator (c7s1-w, d2w, d4w, R4w x blocks, u2w, uw, c7s1-3):
  7x7 convs after a reflection pad of 3; stride-2 3x3 down convs with zero padding 1; residual
  blocks of [reflect-pad 1, 3x3 conv, IN, ReLU, reflect-pad 1, 3x3 conv, IN] + skip; up convs are
  TRANSPOSED convs, PyTorch's ConvTranspose2d(3, stride 2, padding 1, output_padding 1) (the
  output is exactly twice the input; lax.conv_transpose with padding (1, 2) on the dilated input:
  the same map with the kernel flipped spatially); a tanh at the end.
PatchGAN discriminator (70x70 receptive field with 3 layers): 4x4 convs with zero padding 1,
  C64 (no norm), C128, C256 stride 2, C512 stride 1 (IN, LeakyReLU 0.2), a 1-channel 4x4 conv.
  Its output is a grid of real/fake scores, one per overlapping patch.

Instance norm is the original's default, InstanceNorm2d(affine=False, track_running_stats=False):
no parameters, no running statistics, so a net is its params only. As the original does with
instance norm, every conv has a bias (those right before a norm are cancelled by it, harmless).
Init: the original's "normal" init, weights N(0, 0.02), biases 0.

Submodules are named attributes (`block0`, `conv1`, ...), never lists: the param tree has string
keys only (Orbax checkpoints, weight import by name).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import ml_collections
from flax import nnx

__all__ = [
    "DISCRIMINATOR",
    "GENERATOR",
    "PatchDiscriminator",
    "ResnetGenerator",
    "apply",
    "build",
    "generator_sizes",
    "init_net",
    "instance_norm",
    "net_graphdef",
    "reflect_pad",
    "translate",
]

GENERATOR, DISCRIMINATOR = "generator", "discriminator"
KINDS = (GENERATOR, DISCRIMINATOR)

normal_init = jax.nn.initializers.normal(0.02)


def instance_norm(x: jax.Array, eps: float = 1e-5) -> jax.Array:
    """Per image and channel over H, W: (x - mean) / sqrt(biased var + eps), in float32 or wider
    (PyTorch's InstanceNorm2d without affine)."""
    xf = x.astype(jnp.promote_types(x.dtype, jnp.float32))
    mean = xf.mean(axis=(1, 2), keepdims=True)
    var = jnp.square(xf - mean).mean(axis=(1, 2), keepdims=True)
    return ((xf - mean) * jax.lax.rsqrt(var + eps)).astype(x.dtype)


def reflect_pad(x: jax.Array, pad: int) -> jax.Array:
    """ReflectionPad2d(pad) on NHWC: mirrors without repeating the edge pixel."""
    return jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="reflect")


def _conv(in_ch: int, out_ch: int, kernel: int, *, stride: int = 1, padding: int = 0, rngs):
    return nnx.Conv(
        in_ch,
        out_ch,
        (kernel, kernel),
        strides=stride,
        padding=((padding, padding), (padding, padding)),
        kernel_init=normal_init,
        rngs=rngs,
    )


def _up_conv(in_ch: int, out_ch: int, *, rngs):
    """ConvTranspose2d(in, out, 3, stride 2, padding 1, output_padding 1): H -> 2H."""
    return nnx.ConvTranspose(
        in_ch,
        out_ch,
        (3, 3),
        strides=2,
        padding=((1, 2), (1, 2)),
        kernel_init=normal_init,
        rngs=rngs,
    )


class ResidualBlock(nnx.Module):
    def __init__(self, channels: int, *, rngs: nnx.Rngs):
        self.conv1 = _conv(channels, channels, 3, rngs=rngs)
        self.conv2 = _conv(channels, channels, 3, rngs=rngs)

    def __call__(self, x):
        y = jax.nn.relu(instance_norm(self.conv1(reflect_pad(x, 1))))
        return x + instance_norm(self.conv2(reflect_pad(y, 1)))


class ResnetGenerator(nnx.Module):
    """c7s1-w, d(2w), d(4w), `blocks` x R(4w), u(2w), u(w), c7s1-channels, tanh. Any input size
    divisible by 4 comes back at that size."""

    def __init__(self, *, channels: int = 3, width: int = 64, blocks: int = 9, rngs: nnx.Rngs):
        self.stem = _conv(channels, width, 7, rngs=rngs)
        self.down1 = _conv(width, 2 * width, 3, stride=2, padding=1, rngs=rngs)
        self.down2 = _conv(2 * width, 4 * width, 3, stride=2, padding=1, rngs=rngs)
        self.num_blocks = blocks
        for i in range(blocks):
            setattr(self, f"block{i}", ResidualBlock(4 * width, rngs=rngs))
        self.up1 = _up_conv(4 * width, 2 * width, rngs=rngs)
        self.up2 = _up_conv(2 * width, width, rngs=rngs)
        self.head = _conv(width, channels, 7, rngs=rngs)

    def __call__(self, x):
        x = jax.nn.relu(instance_norm(self.stem(reflect_pad(x, 3))))
        x = jax.nn.relu(instance_norm(self.down1(x)))
        x = jax.nn.relu(instance_norm(self.down2(x)))
        for i in range(self.num_blocks):
            x = getattr(self, f"block{i}")(x)
        x = jax.nn.relu(instance_norm(self.up1(x)))
        x = jax.nn.relu(instance_norm(self.up2(x)))
        return jnp.tanh(self.head(reflect_pad(x, 3)))


class PatchDiscriminator(nnx.Module):
    """C(w) - C(2w) - ... stride 2 (`layers` convs, widths capped at 8w), one stride-1 C, a
    1-channel conv; all 4x4, zero padding 1. Output [N, h, w, 1] of unbounded scores (LS-GAN:
    no sigmoid)."""

    def __init__(self, *, channels: int = 3, width: int = 64, layers: int = 3, rngs: nnx.Rngs):
        self.num_layers = layers
        widths = [channels] + [width * min(2**n, 8) for n in range(layers + 1)]
        for n in range(layers + 1):
            stride = 2 if n < layers else 1
            conv = _conv(widths[n], widths[n + 1], 4, stride=stride, padding=1, rngs=rngs)
            setattr(self, f"conv{n}", conv)
        self.head = _conv(widths[-1], 1, 4, padding=1, rngs=rngs)

    def __call__(self, x):
        x = jax.nn.leaky_relu(self.conv0(x), 0.2)  # no norm on the first layer
        for n in range(1, self.num_layers + 1):
            x = jax.nn.leaky_relu(instance_norm(getattr(self, f"conv{n}")(x)), 0.2)
        return self.head(x)


def build(model_config, kind: str, rngs: nnx.Rngs) -> nnx.Module:
    """A generator or a discriminator (`kind`) of `model_config` (cyclegan/config.py)."""
    if kind == GENERATOR:
        return ResnetGenerator(
            channels=model_config.channels,
            width=model_config.gen_width,
            blocks=model_config.gen_blocks,
            rngs=rngs,
        )
    if kind == DISCRIMINATOR:
        return PatchDiscriminator(
            channels=model_config.channels,
            width=model_config.disc_width,
            layers=model_config.disc_layers,
            rngs=rngs,
        )
    raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")


def init_net(model_config, kind: str, seed) -> tuple:
    """(graphdef, params as a plain nested dict) of a new net; `seed` an int or a key."""
    graphdef, params = nnx.split(build(model_config, kind, nnx.Rngs(seed)), nnx.Param)
    return graphdef, nnx.to_pure_dict(params)


def net_graphdef(model_config, kind: str):
    """The static structure of a net, without allocating its parameters."""
    return nnx.split(nnx.eval_shape(lambda: build(model_config, kind, nnx.Rngs(0))))[0]


def apply(graphdef, params, images: jax.Array) -> jax.Array:
    """Runs a net as a pure function of its params (no state besides them: instance norm)."""
    return nnx.merge(graphdef, params)(images)


def generator_sizes(params) -> dict:
    """{channels, gen_width, gen_blocks} of a generator's params: the structure a checkpoint's
    params alone determine, so inference needs no config."""
    _, _, channels, width = params["stem"]["kernel"].shape
    blocks = sum(1 for name in params if name.startswith("block"))
    return {"channels": channels, "gen_width": width, "gen_blocks": blocks}


@functools.lru_cache(maxsize=8)
def _generator_graphdef(channels: int, gen_width: int, gen_blocks: int):
    sizes = {"channels": channels, "gen_width": gen_width, "gen_blocks": gen_blocks}
    return net_graphdef(ml_collections.ConfigDict(sizes), GENERATOR)


@jax.jit
def translate(params_g, images: jax.Array) -> jax.Array:
    """A batch of images [N, H, W, C] in [-1, 1] (H, W divisible by 4) through the generator
    `params_g` (G: source -> target style, or F the other way); the result is in [-1, 1]."""
    graphdef = _generator_graphdef(**generator_sizes(params_g))
    return apply(graphdef, params_g, images)
