"""Data parallelism: one `data` mesh axis; batches sharded along it, state replicated.

BatchNorm statistics inside a jitted step are then means over the global batch (SyncBN).
"""

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

DATA_AXIS = "data"


def make_mesh(devices=None) -> Mesh:
    devices = jax.devices() if devices is None else devices
    return Mesh(np.asarray(devices), (DATA_AXIS,))


def batch_sharding(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P(DATA_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def check_divisible(global_batch: int, mesh: Mesh, name: str) -> None:
    if global_batch % mesh.size:
        raise ValueError(
            f"config.{name}={global_batch} must divide by the number of devices "
            f"({mesh.size}); choose a multiple of {mesh.size}"
        )


def global_batch(local_batch: dict, mesh: Mesh) -> dict:
    """Per-process numpy arrays -> global jax.Arrays sharded along `data`."""
    sharding = batch_sharding(mesh)
    return {
        k: jax.make_array_from_process_local_data(sharding, np.asarray(v))
        for k, v in local_batch.items()
    }


def process_local_rows(array: jax.Array) -> np.ndarray:
    """This process's rows of a batch-sharded global array, in order (the inverse of global_batch)."""
    shards = {s.index[0].start or 0: s.data for s in array.addressable_shards}
    return np.concatenate([np.asarray(shards[k]) for k in sorted(shards)])
