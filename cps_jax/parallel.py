"""Data parallelism: a `data` mesh axis; batches sharded along it, state replicated.

BatchNorm statistics inside a jitted step are then means over the global batch (SyncBN). Other
mesh axes (e.g. for model parallelism) may be added later: batches and the divisibility check use
the `data` axis only, and the state stays replicated along every axis.
"""

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

DATA_AXIS = "data"


def make_mesh(devices=None) -> Mesh:
    """A 1-D `data` mesh. Each process's devices form one contiguous block, so a process's rows of
    a global batch are contiguous too: the per-host slice that input_pipeline reads."""
    devices = jax.devices() if devices is None else list(devices)
    devices = sorted(devices, key=lambda d: d.process_index)  # stable: keeps JAX's order within
    return Mesh(np.asarray(devices), (DATA_AXIS,))


def batch_sharding(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P(DATA_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def data_parallel_size(mesh: Mesh) -> int:
    """How many ways a batch is split: the size of the `data` axis."""
    return mesh.shape[DATA_AXIS]


def check_divisible(global_batch: int, mesh: Mesh, name: str) -> None:
    n = data_parallel_size(mesh)
    if global_batch % n:
        raise ValueError(
            f"config.{name}={global_batch} must divide by the number of devices ({n}); "
            f"choose a multiple of {n}"
        )


def global_batch(local_batch: dict, mesh: Mesh) -> dict:
    """Per-process numpy arrays -> global jax.Arrays sharded along `data`.

    Each process passes its own contiguous rows; in process order they make the global batch.
    """
    sharding = batch_sharding(mesh)
    local_shards = mesh.local_mesh.shape[DATA_AXIS]
    out = {}
    for key, value in local_batch.items():
        value = np.asarray(value)
        if value.shape[0] % local_shards:
            raise ValueError(
                f"batch field {key!r}: {value.shape[0]} rows on this process do not divide over "
                f"its {local_shards} devices"
            )
        out[key] = jax.make_array_from_process_local_data(sharding, value)
    return out


def process_local_rows(array: jax.Array) -> np.ndarray:
    """This process's rows of a batch-sharded global array, in order (the inverse of global_batch)."""
    shards = {s.index[0].start or 0: s.data for s in array.addressable_shards}
    return np.concatenate([np.asarray(shards[k]) for k in sorted(shards)])
