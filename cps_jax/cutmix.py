"""CutMix box masks as jitted array ops (the reference's BoxMaskGenerator), and mixing.

Per sample, `num_boxes` boxes: area proportion p ~ U(area_range); a random aspect ratio
(h = exp(U(0, 1) * ln p), w = p / h, as shares of the image side); both sides scaled by
sqrt(1 / num_boxes); sizes rounded to pixels; the top-left corner uniform so the box stays inside.
The mask starts at 0 and each box toggles (XOR) its region, so overlaps cancel.

`grid` > 1 (not the reference's) puts the boxes' sides and corners on multiples of `grid` pixels:
with the net's output stride, no cell of its deepest features sees two images. At 64x64 crops and
stride 16, 65 % of those cells straddle a box edge of the reference's boxes (12 % at 512x512).
"""

import jax
import jax.numpy as jnp


def box_mask(
    rng: jax.Array,
    height: int,
    width: int,
    *,
    num_boxes: int = 3,
    area_range: tuple[float, float] = (0.25, 0.5),
    random_aspect_ratio: bool = True,
    grid: int = 1,
) -> jax.Array:
    """One [H, W] float32 mask of 0s and 1s."""
    k_area, k_aspect, k_pos = jax.random.split(rng, 3)
    area = jax.random.uniform(k_area, (num_boxes,), minval=area_range[0], maxval=area_range[1])
    if random_aspect_ratio:
        h_share = jnp.exp(jax.random.uniform(k_aspect, (num_boxes,)) * jnp.log(area))
        w_share = area / h_share
    else:
        h_share = w_share = jnp.sqrt(area)
    scale = jnp.sqrt(1.0 / num_boxes)
    side = jnp.array([height, width])
    size = jnp.round(jnp.stack([h_share, w_share], -1) * scale * side)
    if grid > 1:  # whole cells: at least one, corners on the grid
        size = jnp.maximum(jnp.round(size / grid), 1) * grid
        top_left = jnp.round((side - size) / grid * jax.random.uniform(k_pos, size.shape)) * grid
    else:
        top_left = jnp.round((side - size) * jax.random.uniform(k_pos, size.shape))
    bottom_right = top_left + size
    rows = jnp.arange(height)[None, :, None]
    cols = jnp.arange(width)[None, None, :]
    inside = (
        (rows >= top_left[:, None, None, 0])
        & (rows < bottom_right[:, None, None, 0])
        & (cols >= top_left[:, None, None, 1])
        & (cols < bottom_right[:, None, None, 1])
    )
    return (inside.sum(0) % 2).astype(jnp.float32)


def box_masks(rng: jax.Array, batch: int, height: int, width: int, cutmix_config) -> jax.Array:
    """[N, H, W] masks, one independent draw per sample, parameters from `config.cutmix`."""
    grid = cutmix_config.grid
    if grid < 1 or height % grid or width % grid:
        raise ValueError(
            f"config.cutmix.grid must be a positive divisor of the crop's sides, got {grid} "
            f"for {height}x{width}"
        )
    return jax.vmap(
        lambda key: box_mask(
            key,
            height,
            width,
            num_boxes=cutmix_config.num_boxes,
            area_range=tuple(cutmix_config.area_range),
            random_aspect_ratio=cutmix_config.random_aspect_ratio,
            grid=grid,
        )
    )(jax.random.split(rng, batch))


def mix(first: jax.Array, second: jax.Array, mask: jax.Array) -> jax.Array:
    """first * (1 - M) + second * M, with M [N, H, W] broadcast over trailing channels."""
    mask = mask.reshape(mask.shape + (1,) * (first.ndim - mask.ndim)).astype(first.dtype)
    return first * (1 - mask) + second * mask
