"""Convolution implementations, chosen by `config.model.conv_impl`.

  "xla"      ``lax.conv_general_dilated``: XLA's native convolution. Right on GPU/TPU, where it maps
             to cuDNN / the MXU; on the CPU its speed against patches depends on the machine and
             the shape (below).
  "patches"  im2col: the k*k shifted (strided, dilated) views of the padded input are
             concatenated along channels and contracted with the reshaped kernel in ONE matmul,
             [N*Ho*Wo, k*k*Cin] x [k*k*Cin, Cout]; its gradient is two matmuls plus slices and
             pads. The matmuls run near the CPU's matmul speed; the price is k*k times the input's
             memory for the patches, and memory-bound copies (concatenation, pads) around them.
  "auto"     (default) "xla" on any accelerator; on the CPU "patches" for 1x1 convs, which are one
             plain matmul with no patches to build (1.2-2x faster than XLA's convolution on both
             CPUs measured), and "xla" for the others. Whether patches also pay for wide or
             dilated 3x3 convs depends on the CPU: 1.1-2.2x faster on one 2-core Intel machine,
             up to 1.5x slower on a 2-core AMD EPYC (`benchmarks/conv_impl.py` prints, per
             machine, each shape's times and what "auto" costs against the faster of the two).

Each is a drop-in for the ``conv_general_dilated`` argument of ``nnx.Conv``, so parameters, names
and checkpoints do not depend on the choice.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax

__all__ = [
    "CONV_IMPLS",
    "conv_general_dilated_for",
    "conv_patches",
    "max_pool",
    "resolve_impl",
]

CONV_IMPLS = ("auto", "xla", "patches")


def _pairs(value, n: int) -> tuple:
    if value is None:
        return (1,) * n
    if isinstance(value, int):
        return (value,) * n
    return tuple(value)


def conv_patches(lhs, rhs, window_strides, padding, **options):
    """2-D NHWC x HWIO convolution as patches + one matmul; the signature of
    ``lax.conv_general_dilated`` (as ``nnx.Conv`` calls it: the options by keyword). Input
    dilation, other layouts and grouped convs are passed on to XLA's native convolution."""
    dimension_numbers = options.get("dimension_numbers")
    dn = lax.conv_dimension_numbers(
        lhs.shape, rhs.shape, dimension_numbers or ("NHWC", "HWIO", "NHWC")
    )
    native_layout = dn == lax.conv_dimension_numbers(lhs.shape, rhs.shape, ("NHWC", "HWIO", "NHWC"))
    if (
        lhs.ndim != 4
        or not native_layout
        or options.get("feature_group_count", 1) != 1
        or any(d != 1 for d in _pairs(options.get("lhs_dilation"), 2))
    ):
        return lax.conv_general_dilated(lhs, rhs, window_strides, padding, **options)
    rhs_dilation = options.get("rhs_dilation")
    precision = options.get("precision")
    preferred_element_type = options.get("preferred_element_type")
    views = _shifted_views(lhs, rhs.shape, window_strides, padding, rhs_dilation)
    kh, kw, cin, cout = rhs.shape
    contract = (((3,), (0,)), ((), ()))
    dot = functools.partial(
        lax.dot_general, precision=precision, preferred_element_type=preferred_element_type
    )
    patches = views[0] if len(views) == 1 else jnp.concatenate(views, axis=-1)
    # (i, j, c) order of the patch channels = row-major order of the HWIO kernel's first 3 axes.
    return dot(patches, rhs.reshape(kh * kw * cin, cout), contract)


def _shifted_views(lhs, rhs_shape, window_strides, padding, rhs_dilation, fill=0) -> list:
    """The k*k (strided, dilated) views of the NHWC input padded with `fill`, one per kernel tap,
    in (i, j) row-major order; each is [N, Ho, Wo, Cin]."""
    kh, kw, cin, _ = rhs_shape
    sh, sw = _pairs(window_strides, 2)
    dh, dw = _pairs(rhs_dilation, 2)
    if isinstance(padding, str):
        padding = lax.padtype_to_pads(
            lhs.shape[1:3], ((kh - 1) * dh + 1, (kw - 1) * dw + 1), (sh, sw), padding
        )
    (pt, pb), (pl, pr) = padding
    if any((pt, pb, pl, pr)):
        # lax.pad also crops for negative padding, as conv_general_dilated does.
        value = jnp.asarray(fill, lhs.dtype)
        lhs = lax.pad(lhs, value, ((0, 0, 0), (pt, pb, 0), (pl, pr, 0), (0, 0, 0)))
    n, h, w, _ = lhs.shape
    ho = (h - (kh - 1) * dh - 1) // sh + 1
    wo = (w - (kw - 1) * dw - 1) // sw + 1
    return [
        lax.slice(
            lhs,
            (0, i * dh, j * dw, 0),
            (n, i * dh + (ho - 1) * sh + 1, j * dw + (wo - 1) * sw + 1, cin),
            (1, sh, sw, 1),
        )
        for i in range(kh)
        for j in range(kw)
    ]


def resolve_impl(impl: str, rhs_shape=None) -> str:
    """The implementation a conv with this kernel shape runs with; "auto" is decided when the step
    is traced, from the backend and (on the CPU) the kernel's window."""
    if impl not in CONV_IMPLS:
        raise ValueError(f"model.conv_impl must be one of {CONV_IMPLS}, got {impl!r}")
    if impl != "auto":
        return impl
    if jax.default_backend() != "cpu":
        return "xla"
    if rhs_shape is None:
        return "patches"  # no shape: the CPU's choice where it has none (max_pool's views)
    return "patches" if tuple(rhs_shape[:2]) == (1, 1) else "xla"


def _auto(lhs, rhs, window_strides, padding, **kwargs):
    impl = resolve_impl("auto", rhs.shape)
    return _IMPLS[impl](lhs, rhs, window_strides, padding, **kwargs)


_IMPLS = {
    "xla": lax.conv_general_dilated,
    "patches": conv_patches,
    "auto": _auto,
}


def conv_general_dilated_for(impl: str):
    """The ``conv_general_dilated`` callable for `impl` (one of CONV_IMPLS)."""
    resolve_impl(impl)  # validates
    return _IMPLS[impl]


def max_pool(x, window: int, stride: int, padding: int, impl: str = "auto"):
    """PyTorch's MaxPool2d(window, stride, padding) on NHWC: -inf padding, floor mode.

    The gradient of XLA's reduce-window max (a select-and-scatter) was the largest single op in
    a CPU profile of the demo step; on the CPU ("auto", "patches") the pool is instead the
    elementwise max of the window's k*k strided views, whose gradient is a few selects: 2.1x
    faster alone (`benchmarks/conv_impl.py`), within the noise of a whole demo step. It routes
    the gradient like the reduce-window wherever the window's maximum is unique; among exactly
    tied inputs the two split it differently (after a ReLU, ties are zeros, whose gradient the
    ReLU zeroes anyway)."""
    if resolve_impl(impl) == "xla":
        pads = ((0, 0), (padding, padding), (padding, padding), (0, 0))
        return lax.reduce_window(
            x, -jnp.inf, lax.max, (1, window, window, 1), (1, stride, stride, 1), pads
        )
    pad = ((padding, padding),) * 2
    views = _shifted_views(x, (window, window, x.shape[-1], None), stride, pad, None, fill=-jnp.inf)
    return functools.reduce(jnp.maximum, views)
