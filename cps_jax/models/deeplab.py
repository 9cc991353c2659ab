"""DeepLabv3+ as the CPS reference code builds it (TorchSemiSeg ``network.py``).

ASPP: 1x1 and three dilated 3x3 convs (no bias) concatenated, BN, LeakyReLU(0.01), 1x1 reduction;
an image-pooling branch (global mean, 1x1, BN, LeakyReLU, 1x1) is ADDED to it; then BN, LeakyReLU.
Decoder: layer1 features -> 1x1 to 48, BN, ReLU; ASPP output upsampled (bilinear, align_corners)
and concatenated in front of them; two 3x3 conv-BN-ReLU; 1x1 classifier with bias; bilinear
upsampling to the input size. Attribute names follow the PyTorch ones (map_conv*, red_conv, ...).

Two choices follow either flax or the reference code (PyTorch): ``bn_running_var`` ("biased" or
"unbiased", the batch variance every BatchNorm's running average takes in) and
``classifier_bias_init`` ("zeros", or "torch": PyTorch's default Conv2d bias init,
uniform(-1/sqrt(fan_in), 1/sqrt(fan_in))).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from cps_jax.models.resnet import BLOCKS, RUNNING_VAR, ResNet, batch_norm, conv, layer_kwargs

__all__ = [
    "DeepLabV3Plus",
    "ASPP",
    "build_model",
    "resize_bilinear_align_corners",
    "interpolation_matrix",
    "CLASSIFIER_BIAS_INITS",
]

CLASSIFIER_BIAS_INITS = ("zeros", "torch")


def torch_conv_bias_init(fan_in: int):
    """PyTorch's default Conv2d / Linear bias init: uniform(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    bound = 1.0 / np.sqrt(fan_in)

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


def interpolation_matrix(in_size: int, out_size: int) -> np.ndarray:
    """[out_size, in_size] linear-interpolation weights, align_corners=True (PyTorch semantics).

    Output j samples input position j * (in - 1) / (out - 1); an output of size 1 samples 0.
    """
    scale = (in_size - 1) / (out_size - 1) if out_size > 1 else 0.0
    src = np.arange(out_size, dtype=np.float64) * scale
    lo = np.minimum(np.floor(src).astype(np.int64), in_size - 1)
    hi = np.minimum(lo + 1, in_size - 1)
    frac = src - lo
    m = np.zeros((out_size, in_size), np.float64)
    rows = np.arange(out_size)
    np.add.at(m, (rows, lo), 1.0 - frac)
    np.add.at(m, (rows, hi), frac)
    return m


def resize_bilinear_align_corners(x: jax.Array, size: tuple[int, int]) -> jax.Array:
    """Bilinear resize of NHWC ``x`` to ``size`` = (H, W) with align_corners=True.

    Two small interpolation matrices applied with einsum: exact, matmul-friendly on accelerators,
    and its gradient is another matmul (no scatter).
    """
    out_h, out_w = size
    _, in_h, in_w, _ = x.shape
    if (in_h, in_w) == (out_h, out_w):
        return x
    mh = jnp.asarray(interpolation_matrix(in_h, out_h), x.dtype)
    mw = jnp.asarray(interpolation_matrix(in_w, out_w), x.dtype)
    # HIGHEST: default f32 matmul precision on TPU/GPU (bf16 / tf32 passes) would make it inexact.
    hp = jax.lax.Precision.HIGHEST
    x = jnp.einsum("oh,nhwc->nowc", mh, x, precision=hp)
    return jnp.einsum("pw,nowc->nopc", mw, x, precision=hp)


class ASPP(nnx.Module):
    """Atrous spatial pyramid pooling with the image-pooling branch added (not concatenated)."""

    def __init__(self, in_ch, out_ch, rates, *, hidden_ch=None, kw, bn_kw, rngs):
        hidden_ch = hidden_ch or out_ch
        if len(rates) != 3:
            raise ValueError(f"ASPP needs 3 rates, got {rates!r}")
        self.map_conv0 = conv(in_ch, hidden_ch, 1, **kw, rngs=rngs)
        self.map_conv1 = conv(in_ch, hidden_ch, 3, dilation=rates[0], **kw, rngs=rngs)
        self.map_conv2 = conv(in_ch, hidden_ch, 3, dilation=rates[1], **kw, rngs=rngs)
        self.map_conv3 = conv(in_ch, hidden_ch, 3, dilation=rates[2], **kw, rngs=rngs)
        self.map_bn = batch_norm(4 * hidden_ch, **bn_kw, rngs=rngs)
        self.red_conv = conv(4 * hidden_ch, out_ch, 1, **kw, rngs=rngs)
        self.global_pooling_conv = conv(in_ch, hidden_ch, 1, **kw, rngs=rngs)
        self.global_pooling_bn = batch_norm(hidden_ch, **bn_kw, rngs=rngs)
        self.pool_red_conv = conv(hidden_ch, out_ch, 1, **kw, rngs=rngs)
        self.red_bn = batch_norm(out_ch, **bn_kw, rngs=rngs)

    def __call__(self, x, *, train: bool):
        ura = not train
        act = lambda v: jax.nn.leaky_relu(v, 0.01)
        out = jnp.concatenate(
            [self.map_conv0(x), self.map_conv1(x), self.map_conv2(x), self.map_conv3(x)], axis=-1
        )
        out = self.red_conv(act(self.map_bn(out, use_running_average=ura)))
        # Image pooling: mean accumulated in float32 (or wider) whatever the compute dtype.
        acc = jnp.promote_types(x.dtype, jnp.float32)
        pool = jnp.mean(x, axis=(1, 2), keepdims=True, dtype=acc).astype(x.dtype)
        pool = act(self.global_pooling_bn(self.global_pooling_conv(pool), use_running_average=ura))
        out = out + self.pool_red_conv(pool)  # [N,1,1,C] broadcast over H, W
        return act(self.red_bn(out, use_running_average=ura))


class DeepLabV3Plus(nnx.Module):
    """ResNet backbone + ASPP + DeepLabv3+ decoder; ``x`` [N,H,W,3] -> float32 logits [N,H,W,C]
    (float64 for a float64 net).

    Submodules: ``backbone`` (the part initialised from ImageNet weights) and the head:
    ``aspp``, ``reduce_conv/bn``, ``last_conv1/bn1``, ``last_conv2/bn2``, ``classifier``.
    """

    def __init__(
        self,
        num_classes: int,
        *,
        backbone_depth: int = 50,
        stem: str = "deep",
        output_stride: int = 16,
        width: int = 64,
        aspp_channels: int = 256,
        low_level_channels: int = 48,
        decoder_channels: int = 256,
        multi_grid=(1, 2, 4),
        aspp_rates=None,
        classifier_bias_init: str = "zeros",
        rngs: nnx.Rngs,
        **numerics,
    ):
        """`numerics`, how every layer computes, the backbone's and the head's alike: dtype,
        param_dtype, conv_impl, bn_momentum, bn_epsilon, bn_running_var (their defaults:
        resnet.layer_kwargs)."""
        if classifier_bias_init not in CLASSIFIER_BIAS_INITS:
            raise ValueError(
                f"classifier_bias_init must be one of {CLASSIFIER_BIAS_INITS}, "
                f"got {classifier_bias_init!r}"
            )
        kw, bn_kw = layer_kwargs(**numerics)
        if aspp_rates is None:  # (6, 12, 18) at OS16, scaled with the feature resolution
            aspp_rates = {8: (12, 24, 36), 16: (6, 12, 18), 32: (3, 6, 9)}[output_stride]
        self.dtype = kw["dtype"]
        architecture = dict(stem=stem, output_stride=output_stride, multi_grid=multi_grid)
        self.backbone = ResNet(backbone_depth, width=width, rngs=rngs, **architecture, **numerics)
        self.aspp = ASPP(
            self.backbone.out_channels,
            aspp_channels,
            tuple(aspp_rates),
            kw=kw,
            bn_kw=bn_kw,
            rngs=rngs,
        )
        self.reduce_conv = conv(
            self.backbone.low_level_channels, low_level_channels, 1, **kw, rngs=rngs
        )
        self.reduce_bn = batch_norm(low_level_channels, **bn_kw, rngs=rngs)
        self.last_conv1 = conv(
            aspp_channels + low_level_channels, decoder_channels, 3, **kw, rngs=rngs
        )
        self.last_bn1 = batch_norm(decoder_channels, **bn_kw, rngs=rngs)
        self.last_conv2 = conv(decoder_channels, decoder_channels, 3, **kw, rngs=rngs)
        self.last_bn2 = batch_norm(decoder_channels, **bn_kw, rngs=rngs)
        # Bias 0 ("zeros"), or PyTorch's default uniform +-1/sqrt(fan_in) ("torch", the reference).
        bias_init = (
            torch_conv_bias_init(decoder_channels)  # fan_in of a 1x1 conv
            if classifier_bias_init == "torch"
            else jax.nn.initializers.zeros
        )
        self.classifier = conv(
            decoder_channels, num_classes, 1, use_bias=True, bias_init=bias_init, **kw, rngs=rngs
        )

    def __call__(self, x, *, train: bool) -> jax.Array:
        ura = not train
        in_hw = x.shape[1:3]
        feats = self.backbone(x.astype(self.dtype), train=train)
        f = self.aspp(feats["layer4"], train=train)
        low = feats["layer1"]
        low = jax.nn.relu(self.reduce_bn(self.reduce_conv(low), use_running_average=ura))
        f = resize_bilinear_align_corners(f, low.shape[1:3])
        f = jnp.concatenate([f, low], axis=-1)  # ASPP channels first, as in the reference
        f = jax.nn.relu(self.last_bn1(self.last_conv1(f), use_running_average=ura))
        f = jax.nn.relu(self.last_bn2(self.last_conv2(f), use_running_average=ura))
        logits = self.classifier(f).astype(jnp.promote_types(self.dtype, jnp.float32))
        return resize_bilinear_align_corners(logits, in_hw)


# Compute dtypes; parameters are float32, except for float64 (numerical checks, needs
# jax_enable_x64), whose parameters are float64 too.
_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float64": jnp.float64}
BACKBONES = {f"resnet{d}": d for d in BLOCKS}  # config.model.backbone -> ResNet depth
OUTPUT_STRIDES = (8, 16, 32)
# The model fields that a run saved before they were declared lacks (its W/config.json, or the
# config inside its .cpsj file), and what such a run was built with: it stays readable. Every
# config declares them (configs/common.py holds the defaults of new runs).
PREDATING_FIELDS = {
    "multi_grid": (1, 2, 4),
    "aspp_rates": (),
    "bn_momentum": 0.9,
    "bn_epsilon": 1e-5,
    "bn_running_var": "biased",
    "classifier_bias_init": "zeros",
    "conv_impl": "auto",
}


def build_model(model_config, num_classes: int, rngs: nnx.Rngs) -> DeepLabV3Plus:
    """DeepLabV3Plus from a ``config.model`` ConfigDict (configs/common.py declares its fields);
    validates each field.

    backbone, stem, output_stride, width, aspp_channels, low_level_channels, decoder_channels,
    dtype, multi_grid, aspp_rates (() -> from the output stride), bn_momentum, bn_epsilon,
    bn_running_var ("biased" | "unbiased"), classifier_bias_init ("zeros" | "torch") and
    conv_impl (models/conv.py); a saved run's config may lack those of PREDATING_FIELDS.
    """
    c = model_config

    def get(field):
        if field in c:
            return c[field]
        if field in PREDATING_FIELDS:
            return PREDATING_FIELDS[field]
        raise ValueError(f"model.{field} is missing from the model config")

    def choice(field, allowed):
        value = get(field)
        if value not in allowed:
            raise ValueError(f"model.{field} must be one of {sorted(allowed)}, got {value!r}")
        return value

    def positive_int(field):
        value = get(field)
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"model.{field} must be a positive int, got {value!r}")
        return value

    depth = BACKBONES[choice("backbone", BACKBONES)]
    stem = choice("stem", ("deep", "torchvision"))
    output_stride = choice("output_stride", OUTPUT_STRIDES)
    dtype = _DTYPES[choice("dtype", _DTYPES)]
    if dtype == jnp.float64 and not jax.config.jax_enable_x64:
        raise ValueError("model.dtype='float64' needs jax_enable_x64 (else arrays are float32)")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes <= 0:
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
    aspp_rates = get("aspp_rates")
    return DeepLabV3Plus(
        num_classes,
        backbone_depth=depth,
        stem=stem,
        output_stride=output_stride,
        width=positive_int("width"),
        aspp_channels=positive_int("aspp_channels"),
        low_level_channels=positive_int("low_level_channels"),
        decoder_channels=positive_int("decoder_channels"),
        multi_grid=tuple(get("multi_grid")),
        aspp_rates=tuple(aspp_rates) if aspp_rates else None,
        dtype=dtype,
        param_dtype=jnp.float64 if dtype == jnp.float64 else jnp.float32,
        bn_momentum=get("bn_momentum"),
        bn_epsilon=get("bn_epsilon"),
        bn_running_var=choice("bn_running_var", RUNNING_VAR),
        classifier_bias_init=choice("classifier_bias_init", CLASSIFIER_BIAS_INITS),
        conv_impl=get("conv_impl"),
        rngs=rngs,
    )
