"""Dilated ResNet backbones (NHWC) as CPS uses them: v1c deep stem or torchvision stem.

Layout mirrors PyTorch so that ImageNet weights can be imported block by block: 3x3 convs use
explicit symmetric padding (``dilation`` on each side), never "SAME" (which pads stride-2 convs
asymmetrically); the stride of a bottleneck sits on its 3x3 conv (v1.5); the downsample branch is
a strided 1x1 conv + BN.

Every submodule is a named attribute (``layer1.block0.conv2``, ...), never a list, so the state
tree has only string keys (Orbax checkpoints, PyTorch name mapping).

BatchNorm mode is chosen per call (``train=True`` -> batch statistics and running-average
update), never through ``model.train()`` / ``model.eval()``.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from cps_jax.models.conv import conv_general_dilated_for, max_pool

__all__ = [
    "ResNet",
    "BatchNorm",
    "BLOCKS",
    "RUNNING_VAR",
    "conv",
    "batch_norm",
    "layer_kwargs",
    "kaiming_normal",
]

# Kaiming normal, fan_in, gain sqrt(2) for ReLU (torch.nn.init.kaiming_normal_, not truncated).
kaiming_normal = jax.nn.initializers.variance_scaling(2.0, "fan_in", "normal")

# depth -> (block type, blocks per stage)
BLOCKS = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
}


def conv(
    in_ch,
    out_ch,
    kernel,
    *,
    stride=1,
    dilation=1,
    use_bias=False,
    bias_init=jax.nn.initializers.zeros,
    dtype,
    param_dtype,
    impl="auto",
    rngs,
):
    """A PyTorch-style conv: symmetric padding dilation * (kernel - 1) // 2, Kaiming init; `impl`
    picks the convolution algorithm (models/conv.py), never the parameters; the bias (if any)
    starts from `bias_init` (zeros by default)."""
    pad = dilation * (kernel - 1) // 2
    return nnx.Conv(
        in_ch,
        out_ch,
        (kernel, kernel),
        strides=stride,
        padding=((pad, pad), (pad, pad)),
        kernel_dilation=dilation,
        use_bias=use_bias,
        kernel_init=kaiming_normal,
        bias_init=bias_init,
        dtype=dtype,
        param_dtype=param_dtype,
        conv_general_dilated=conv_general_dilated_for(impl),
        rngs=rngs,
    )


RUNNING_VAR = ("biased", "unbiased")


class BatchNorm(nnx.BatchNorm):
    """``nnx.BatchNorm`` (same parameters and state) with a trace-friendly training update.

    flax 0.12.8 writes the running averages with ``var[...] = new``, whose full-replace check
    reads ``tracer.sharding``; under ``jit`` that builds an error message by walking the whole
    jaxpr, so tracing a train-mode forward is quadratic in the net's size (about +10 s to trace
    a two-forward ResNet-101 step). ``set_value`` replaces the value directly.
    The training branch matches flax's with ``use_fast_variance=False``: statistics in float32
    (or wider), normalisation with the biased batch variance. ``running_var`` says which batch
    variance the running average takes in:
      "biased"   (flax): the same biased variance;
      "unbiased" (PyTorch): the variance x n / (n - 1), n = values per channel in the batch
                 (N*H*W); at n = 1, where PyTorch refuses to train, the biased one (0).
    The running averages are float32 (as flax's), or float64 with float64 parameters.
    """

    def __init__(self, num_features: int, *, running_var: str = "biased", **kwargs):
        if running_var not in RUNNING_VAR:
            raise ValueError(f"running_var must be one of {RUNNING_VAR}, got {running_var!r}")
        super().__init__(num_features, **kwargs)
        self.running_var = running_var
        stat_dtype = jnp.promote_types(kwargs.get("param_dtype", jnp.float32), jnp.float32)
        if stat_dtype != self.mean.dtype:  # flax makes them float32 whatever param_dtype is
            self.mean = nnx.BatchStat(self.mean[...].astype(stat_dtype))
            self.var = nnx.BatchStat(self.var[...].astype(stat_dtype))

    def __call__(self, x, use_running_average: bool):
        if use_running_average:
            return super().__call__(x, use_running_average=True)
        axes = tuple(range(x.ndim - 1))
        xf = x.astype(jnp.promote_types(x.dtype, jnp.float32))
        mean = xf.mean(axes)
        var = jnp.square(xf - mean).mean(axes)  # two-pass: robust for bfloat16 activations
        n = math.prod(x.shape[:-1])  # static: the values each channel's statistics are over
        running = var * (n / (n - 1)) if self.running_var == "unbiased" and n > 1 else var
        decay = self.momentum

        def average(old, new):  # in the statistics' own dtype, step after step
            return jax.lax.stop_gradient(decay * old + (1 - decay) * new).astype(old.dtype)

        self.mean.set_value(average(self.mean[...], mean))
        self.var.set_value(average(self.var[...], running))
        y = (xf - mean) * (jax.lax.rsqrt(var + self.epsilon) * self.scale[...]) + self.bias[...]
        return y.astype(self.dtype or x.dtype)


def batch_norm(ch, *, rngs, **bn_kw):
    """BatchNorm with scale 1, bias 0 and flax's exact variance; ``bn_kw``: ``momentum`` (flax's
    running-average decay, 0.9), ``epsilon``, ``dtype``, ``param_dtype`` and ``running_var``:
    "biased" (flax) or "unbiased" (PyTorch), see ``BatchNorm``."""
    return BatchNorm(ch, use_fast_variance=False, rngs=rngs, **bn_kw)


def layer_kwargs(
    *,
    dtype=jnp.float32,
    param_dtype=jnp.float32,
    conv_impl: str = "auto",
    bn_momentum: float = 0.9,
    bn_epsilon: float = 1e-5,
    bn_running_var: str = "biased",
) -> tuple[dict, dict]:
    """(kw, bn_kw): the keyword arguments of every `conv` and every `batch_norm` of a net, from
    how its layers compute (the "numerics" a ResNet or DeepLabV3Plus passes on)."""
    precision = dict(dtype=dtype, param_dtype=param_dtype)
    kw = dict(impl=conv_impl, **precision)
    bn_kw = dict(momentum=bn_momentum, epsilon=bn_epsilon, running_var=bn_running_var, **precision)
    return kw, bn_kw


class _Block(nnx.Module):
    """A residual block: conv1, bn1, ..., conv{n}, bn{n} in a row (ReLU between them), added to
    the input or to its downsample branch (a strided 1x1 conv + BN where the shape changes)."""

    expansion = 1
    num_convs = 2

    def _add_downsample(self, in_ch, out_ch, stride, kw, bn_kw, rngs):
        self.has_downsample = stride != 1 or in_ch != out_ch
        if self.has_downsample:
            self.downsample_conv = conv(in_ch, out_ch, 1, stride=stride, **kw, rngs=rngs)
            self.downsample_bn = batch_norm(out_ch, **bn_kw, rngs=rngs)

    def __call__(self, x, *, train: bool):
        ura = not train
        y = x
        for i in range(1, self.num_convs + 1):
            y = getattr(self, f"bn{i}")(getattr(self, f"conv{i}")(y), use_running_average=ura)
            if i < self.num_convs:
                y = jax.nn.relu(y)
        if self.has_downsample:
            x = self.downsample_bn(self.downsample_conv(x), use_running_average=ura)
        return jax.nn.relu(y + x)


class BasicBlock(_Block):
    """Two 3x3 convs (ResNet-18/34); both are dilated when the stage is."""

    def __init__(self, in_ch, planes, *, stride, dilation, kw, bn_kw, rngs):
        self.conv1 = conv(in_ch, planes, 3, stride=stride, dilation=dilation, **kw, rngs=rngs)
        self.bn1 = batch_norm(planes, **bn_kw, rngs=rngs)
        self.conv2 = conv(planes, planes, 3, dilation=dilation, **kw, rngs=rngs)
        self.bn2 = batch_norm(planes, **bn_kw, rngs=rngs)
        self._add_downsample(in_ch, planes, stride, kw, bn_kw, rngs)


class Bottleneck(_Block):
    """1x1 -> 3x3 (stride, dilation) -> 1x1 x4 (ResNet-50/101, v1.5 stride placement)."""

    expansion = 4
    num_convs = 3

    def __init__(self, in_ch, planes, *, stride, dilation, kw, bn_kw, rngs):
        out_ch = planes * self.expansion
        self.conv1 = conv(in_ch, planes, 1, **kw, rngs=rngs)
        self.bn1 = batch_norm(planes, **bn_kw, rngs=rngs)
        self.conv2 = conv(planes, planes, 3, stride=stride, dilation=dilation, **kw, rngs=rngs)
        self.bn2 = batch_norm(planes, **bn_kw, rngs=rngs)
        self.conv3 = conv(planes, out_ch, 1, **kw, rngs=rngs)
        self.bn3 = batch_norm(out_ch, **bn_kw, rngs=rngs)
        self._add_downsample(in_ch, out_ch, stride, kw, bn_kw, rngs)


class ResLayer(nnx.Module):
    """One stage: blocks ``block0`` .. ``block{n-1}``; only the first one strides/downsamples."""

    def __init__(self, block_cls, in_ch, planes, num_blocks, *, stride, dilations, kw, bn_kw, rngs):
        self.block_names = tuple(f"block{i}" for i in range(num_blocks))
        for i, name in enumerate(self.block_names):
            setattr(
                self,
                name,
                block_cls(
                    in_ch,
                    planes,
                    stride=stride if i == 0 else 1,
                    dilation=dilations[i],
                    kw=kw,
                    bn_kw=bn_kw,
                    rngs=rngs,
                ),
            )
            in_ch = planes * block_cls.expansion
        self.out_channels = in_ch

    def __call__(self, x, *, train: bool):
        for name in self.block_names:
            x = getattr(self, name)(x, train=train)
        return x


class ResNet(nnx.Module):
    """ResNet-18/34/50/101 with output stride 8, 16 or 32.

    Stems (``width`` w, 64 for the standard nets):
      "deep" (v1c, the CPS reference): 3x3 s2 3->w, BN, ReLU; 3x3 w->w, BN, ReLU; 3x3 w->2w, BN,
        ReLU; 3x3 s2 max-pool. layer1 then consumes 2w channels.
      "torchvision": 7x7 s2 3->w, BN, ReLU; 3x3 s2 max-pool.
    Stage widths w, 2w, 4w, 8w (x4 for bottlenecks). Output stride 16: layer4 keeps stride 1 and
    its blocks' 3x3 convs are dilated 2 * multi_grid (the first 2 entries for ResNet-18); 8:
    additionally layer3 keeps stride 1 with dilation 2 and layer4 uses 4 * multi_grid.
    ``bn_running_var`` ("biased" | "unbiased") goes to every BatchNorm (see ``BatchNorm``).

    ``__call__`` returns {"stem": stride 2 (before the max-pool), "layer1": stride 4, "layer2": 8,
    "layer3": 16 or 8, "layer4": output_stride}, NHWC, in ``dtype``.
    """

    def __init__(
        self,
        depth: int,
        *,
        stem: str = "deep",
        output_stride: int = 16,
        multi_grid: tuple = (1, 2, 4),
        width: int = 64,
        rngs: nnx.Rngs,
        **numerics,
    ):
        """`numerics`: dtype, param_dtype, conv_impl, bn_momentum, bn_epsilon, bn_running_var
        (their defaults: `layer_kwargs`)."""
        if depth not in BLOCKS:
            raise ValueError(f"ResNet depth must be one of {sorted(BLOCKS)}, got {depth!r}")
        if stem not in ("deep", "torchvision"):
            raise ValueError(f"stem must be 'deep' or 'torchvision', got {stem!r}")
        if output_stride not in (8, 16, 32):
            raise ValueError(f"output_stride must be 8, 16 or 32, got {output_stride!r}")
        kind, layers = BLOCKS[depth]
        # One multi-grid unit per layer4 block; ResNet-18 (2 blocks) uses the first two.
        if len(multi_grid) < layers[3]:
            raise ValueError(
                f"multi_grid needs {layers[3]} entries (layer4 blocks), got {multi_grid!r}"
            )
        mg = tuple(multi_grid)[: layers[3]]
        block_cls = BasicBlock if kind == "basic" else Bottleneck
        kw, bn_kw = layer_kwargs(**numerics)
        self.depth, self.stem_type, self.output_stride = depth, stem, output_stride
        self.conv_impl = kw["impl"]

        if stem == "deep":
            self.conv1 = conv(3, width, 3, stride=2, **kw, rngs=rngs)
            self.bn1 = batch_norm(width, **bn_kw, rngs=rngs)
            self.conv2 = conv(width, width, 3, **kw, rngs=rngs)
            self.bn2 = batch_norm(width, **bn_kw, rngs=rngs)
            self.conv3 = conv(width, 2 * width, 3, **kw, rngs=rngs)
            self.bn3 = batch_norm(2 * width, **bn_kw, rngs=rngs)
            in_ch = 2 * width
        else:
            self.conv1 = conv(3, width, 7, stride=2, **kw, rngs=rngs)
            self.bn1 = batch_norm(width, **bn_kw, rngs=rngs)
            in_ch = width

        # (stride, per-block dilations) of layer1..layer4.
        plan = {
            32: [(1, None), (2, None), (2, None), (2, None)],
            16: [(1, None), (2, None), (2, None), (1, tuple(2 * m for m in mg))],
            8: [(1, None), (2, None), (1, (2,) * layers[2]), (1, tuple(4 * m for m in mg))],
        }[output_stride]
        for i, (n, (stride, dil)) in enumerate(zip(layers, plan)):
            layer = ResLayer(
                block_cls,
                in_ch,
                width * 2**i,
                n,
                stride=stride,
                dilations=dil or (1,) * n,
                kw=kw,
                bn_kw=bn_kw,
                rngs=rngs,
            )
            setattr(self, f"layer{i + 1}", layer)
            in_ch = layer.out_channels
        self.out_channels = in_ch  # layer4
        self.low_level_channels = self.layer1.out_channels

    def __call__(self, x, *, train: bool) -> dict[str, jax.Array]:
        ura = not train
        x = jax.nn.relu(self.bn1(self.conv1(x), use_running_average=ura))
        if self.stem_type == "deep":
            x = jax.nn.relu(self.bn2(self.conv2(x), use_running_average=ura))
            x = jax.nn.relu(self.bn3(self.conv3(x), use_running_average=ura))
        feats = {"stem": x}
        x = max_pool(x, 3, 2, 1, impl=self.conv_impl)
        for name in ("layer1", "layer2", "layer3", "layer4"):
            x = getattr(self, name)(x, train=train)
            feats[name] = x
        return feats
