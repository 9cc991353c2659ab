"""The history pool of generated images (Shrivastava et al. 2017, as CycleGAN uses it): the
discriminators also see older fakes, which damps the oscillation between G and D.

The pool is two arrays, so it lives in the train state and is checkpointed:
    {"images": [size, H, W, C], "count": int32 (how many are stored, <= size)}
`query` follows the official ImagePool.query image by image, in batch order:
  - pool not full: the new image is stored (at slot `count`) and returned;
  - full: with probability 0.5 a uniformly chosen stored image is returned and the new one takes
    its slot; otherwise the new image is returned and the pool is unchanged.
The random draws are made up front (`draws`), one per image, so the rule itself is a pure
function of (pool, images, draws) that a test can replay; images stored while filling ignore
theirs.
"""

import jax
import jax.numpy as jnp


def init_pool(size: int, image_shape, dtype=jnp.float32) -> dict:
    """An empty pool for `size` images of `image_shape` (H, W, C)."""
    return {
        "images": jnp.zeros((size, *image_shape), dtype),
        "count": jnp.zeros((), jnp.int32),
    }


def pool_size(pool: dict) -> int:
    """The pool's capacity (static: its array's leading size)."""
    return pool["images"].shape[0]


def draws(key: jax.Array, batch_size: int, size: int) -> dict:
    """The randomness of one query: per image, whether a full pool hands back a stored image
    (uniform > 0.5, as the original's `random.uniform(0, 1) > 0.5`) and which slot."""
    k_coin, k_slot = jax.random.split(key)
    return {
        "use_stored": jax.random.uniform(k_coin, (batch_size,)) > 0.5,
        "index": jax.random.randint(k_slot, (batch_size,), 0, max(size, 1), jnp.int32),
    }


def query(pool: dict, images: jax.Array, batch_draws: dict) -> tuple[dict, jax.Array]:
    """(new pool, the images for the discriminator): the module docstring's rule, image by image
    (a scan: a later image of the batch sees the pool the earlier ones left). Size 0: no pool."""
    size = pool_size(pool)
    if size == 0:
        return pool, images

    def one(carry, item):
        stored, count = carry
        image, use_stored, index = item
        filling = count < size
        slot = jnp.where(filling, count, index)
        old = jax.lax.dynamic_index_in_dim(stored, slot, keepdims=False)
        swap = filling | use_stored
        stored = jax.lax.dynamic_update_index_in_dim(
            stored, jnp.where(swap, image, old), slot, axis=0
        )
        out = jnp.where(~filling & use_stored, old, image)
        return (stored, count + filling.astype(count.dtype)), out

    images = images.astype(pool["images"].dtype)
    (stored, count), returned = jax.lax.scan(
        one,
        (pool["images"], pool["count"]),
        (images, batch_draws["use_stored"], batch_draws["index"]),
    )
    return {"images": stored, "count": count}, returned
