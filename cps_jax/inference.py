"""Test-time inference as pure functions of an `apply_fn(images [N,h,w,3]) -> logits [N,h,w,C]`.

Images arrive as a batch *canvas*: each image at the top-left corner, padded bottom/right with 0.0
(the mean colour once normalised) to a common size, with its own (height, width) in `sizes`. Top-left
placement keeps pixel (0, 0) in place under rescaling, so one resize of the canvas rescales every
image in it, and predictions are cropped back with [:h, :w].

Modes (the reference evaluator of CPS, TorchSemiSeg `engine/evaluator.py`):
- `whole`: the net sees the whole canvas at once.
- `sliding`: windows of `window` pixels every `stride` pixels (the reference: window = crop size,
  stride = ceil(2/3 window)); an image smaller than the window is padded up to it. Windows are
  placed per image, from its own size, as the reference does for one image at a time, so a batch
  of mixed sizes gives each image the windows it would get alone. Each pixel's logits are the mean
  over the windows covering it (the reference sums them: the same argmax).
- `scales`: the canvas is resized by each scale (bilinear, half-pixel centres, no antialiasing,
  like OpenCV's INTER_LINEAR), predicted, and the logits resized back; `flip` adds the horizontally
  mirrored input of every window. Logits, not softmax probabilities, are averaged over scales and
  flips, as the reference evaluator does (it sums them).

Differences from the reference, all at image borders: padding is bottom/right rather than centred,
and in `whole` mode an image smaller than its batch's canvas sees the canvas padding.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

MODES = ("whole", "sliding")


@dataclasses.dataclass(frozen=True)
class InferenceOptions:
    mode: str = "whole"
    window: tuple[int, int] | None = None  # sliding only
    stride: tuple[int, int] | None = None  # sliding only; None: ceil(2/3 window)
    scales: tuple[float, ...] = (1.0,)
    flip: bool = False
    pad_multiple: int = 1  # canvas sizes rounded up to a multiple: fewer distinct compiled shapes

    def __post_init__(self):
        _check(self.mode in MODES, "mode", f"one of {MODES}", self.mode)
        _check(
            len(self.scales) > 0 and all(float(s) > 0 for s in self.scales),
            "scales",
            "a non-empty list of positive numbers",
            self.scales,
        )
        _check(
            _positive_int(self.pad_multiple), "pad_multiple", "a positive int", self.pad_multiple
        )
        if self.mode == "sliding":
            _check(_hw(self.window), "window", "(height, width) of positive ints", self.window)
            if self.stride is not None:
                _check(_hw(self.stride), "stride", "(height, width) of positive ints", self.stride)

    @property
    def window_stride(self) -> tuple[tuple[int, int], tuple[int, int]]:
        window = tuple(int(w) for w in self.window)
        stride = self.stride if self.stride is not None else default_stride(window)
        return window, tuple(int(s) for s in stride)

    @property
    def min_size(self) -> tuple[int, int]:
        """The smallest canvas: sliding windows must fit in it."""
        return self.window_stride[0] if self.mode == "sliding" else (1, 1)


def _positive_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v > 0


def _hw(v) -> bool:
    return v is not None and len(v) == 2 and all(_positive_int(x) for x in v)


def _check(ok: bool, field: str, expected: str, got) -> None:
    if not ok:
        raise ValueError(f"config.eval.{field}: expected {expected}, got {got!r}")


def options_from_config(config) -> InferenceOptions:
    """`config.eval`. An empty `window` means `config.data.crop_size`, an empty `stride`
    ceil(2/3 window), as the reference does."""
    e = config.eval

    def tuple_or_none(value):
        return tuple(value) if value else None

    window = tuple_or_none(e.window)
    if window is None and e.mode == "sliding":
        window = tuple(config.data.crop_size)
    return InferenceOptions(
        mode=e.mode,
        window=window,
        stride=tuple_or_none(e.stride),
        scales=tuple(float(s) for s in e.scales),
        flip=bool(e.flip),
        pad_multiple=e.pad_multiple,
    )


def default_stride(window: Sequence[int]) -> tuple[int, ...]:
    """The reference stride: ceil(2/3 of the window), per dimension."""
    return tuple(math.ceil(2 * w / 3) for w in window)


def num_windows(size: int, window: int, stride: int) -> int:
    """Windows along one axis of an image padded up to at least `window` (the reference's grid)."""
    return -(-max(size - window, 0) // stride) + 1


def window_starts(size: int, window: int, stride: int) -> list[int]:
    """Start of each window along one axis: every `stride`, the last one flush with the end."""
    extent = max(size, window)
    return [min(i * stride, extent - window) for i in range(num_windows(size, window, stride))]


def canvas_size(sizes, options: InferenceOptions = InferenceOptions()) -> tuple[int, int]:
    """The padded batch size for images of `sizes` [(h, w), ...]: their maximum, at least the
    window, rounded up to `options.pad_multiple`."""
    sizes = np.asarray(sizes, np.int64).reshape(-1, 2)
    largest = np.maximum(sizes.max(0) if len(sizes) else (1, 1), options.min_size)
    m = options.pad_multiple
    return tuple(int(-(-s // m) * m) for s in largest)


def _round_half_up(x):
    return jnp.floor(x + 0.5).astype(jnp.int32)


def hflip(x: jax.Array) -> jax.Array:
    return x[:, :, ::-1]


def with_flip(apply_fn: Callable, flip: bool) -> Callable:
    """apply_fn, or the mean of its logits on x and (mirrored back) on mirrored x."""
    if not flip:
        return apply_fn
    return lambda x: 0.5 * (apply_fn(x) + hflip(apply_fn(hflip(x))))


def resize(x: jax.Array, shape: tuple[int, int], scale: float) -> jax.Array:
    """[N,H,W,C] -> [N,*shape,C], output pixel (i + 0.5) sampling input (i + 0.5) / scale: bilinear,
    no antialiasing. Scaling about the origin keeps a top-left image's extent at scale x size."""
    if shape == x.shape[1:3] and scale == 1.0:
        return x
    return jax.image.scale_and_translate(
        x,
        (x.shape[0], *shape, x.shape[3]),
        spatial_dims=(1, 2),
        scale=jnp.array([scale, scale], jnp.float32),
        translation=jnp.zeros(2, jnp.float32),
        method="linear",
        antialias=False,
    )


def sliding_logits(
    apply_fn: Callable,
    images: jax.Array,
    sizes: jax.Array,
    window: tuple[int, int],
    stride: tuple[int, int],
) -> jax.Array:
    """Mean logits over sliding windows, placed per image from its size; [N,H,W,3] -> [N,H,W,C].

    The canvas gives the (static) number of windows; an image with fewer windows than its canvas
    has its extra ones masked out. One window per image per scan step keeps memory at one batch of
    windows, whatever the image size.
    """
    n, height, width, _ = images.shape
    (wh, ww), (sh, sw) = window, stride
    # Pad the canvas so every window fits (an image smaller than the window is padded up to it).
    ph, pw = max(height, wh), max(width, ww)
    canvas = jnp.pad(images, ((0, 0), (0, ph - height), (0, pw - width), (0, 0)))
    ky, kx = num_windows(ph, wh, sh), num_windows(pw, ww, sw)
    extent = jnp.maximum(sizes.astype(jnp.int32), jnp.array([wh, ww]))  # each padded image

    def starts(axis, k, win, step):
        i = jnp.arange(k)[None, :]
        span = extent[:, axis : axis + 1] - win
        # The reference's grid: i * step, the last window flush with the end; ceil(span/step)+1.
        return jnp.minimum(i * step, span), (i - 1) * step < span

    y0, y_valid = starts(0, ky, wh, sh)
    x0, x_valid = starts(1, kx, ww, sw)
    num_classes = jax.eval_shape(apply_fn, jax.ShapeDtypeStruct((n, wh, ww, 3), images.dtype))
    num_classes = num_classes.shape[-1]

    crop = jax.vmap(lambda a, y, x: jax.lax.dynamic_slice(a, (y, x, 0), (wh, ww, a.shape[-1])))
    add = jax.vmap(
        lambda a, u, y, x: jax.lax.dynamic_update_slice(
            a, jax.lax.dynamic_slice(a, (y, x, 0), u.shape) + u, (y, x, 0)
        )
    )

    def step(carry, k):
        total, count = carry
        iy, ix = k // kx, k % kx
        y, x = y0[:, iy], x0[:, ix]
        valid = (y_valid[:, iy] & x_valid[:, ix]).astype(jnp.float32)[:, None, None, None]
        logits = apply_fn(crop(canvas, y, x)) * valid
        total = add(total, logits, y, x)
        count = add(count, jnp.broadcast_to(valid, (n, wh, ww, 1)), y, x)
        return (total, count), None

    init = (
        jnp.zeros((n, ph, pw, num_classes), jnp.float32),
        jnp.zeros((n, ph, pw, 1), jnp.float32),
    )
    (total, count), _ = jax.lax.scan(step, init, jnp.arange(ky * kx))
    return (total / jnp.maximum(count, 1.0))[:, :height, :width]


def predict_logits(
    apply_fn: Callable, images: jax.Array, sizes: jax.Array, options: InferenceOptions
) -> jax.Array:
    """Logits of a batch canvas [N,H,W,3] (image sizes [N,2]) by `options`: [N,H,W,C] float32."""
    net = with_flip(apply_fn, options.flip)
    height, width = images.shape[1:3]
    total = 0.0
    for scale in options.scales:
        scale = float(scale)
        shape = tuple(max(1, math.floor(scale * s + 0.5)) for s in (height, width))
        scaled = resize(images, shape, scale)
        if options.mode == "whole":
            logits = net(scaled)
        else:
            scaled_sizes = jnp.maximum(_round_half_up(sizes * scale), 1)
            logits = sliding_logits(net, scaled, scaled_sizes, *options.window_stride)
        total = total + resize(logits.astype(jnp.float32), (height, width), 1.0 / scale)
    return total / len(options.scales)
