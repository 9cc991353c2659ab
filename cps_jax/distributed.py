"""Multi-process start-up: one JAX process per host (TPU VM worker, GPU node), joined by JAX's own
distributed runtime; process 0 also runs the coordinator service.

Where the three parameters come from, first match wins:
  flags   --coordinator_address HOST:PORT, --num_processes N, --process_id I
  env     JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID
  cluster JAX's auto-detection (Cloud TPU pod slices, SLURM, Open MPI) fills whatever is unset.
With none of them and no cluster around, the run is one process and nothing is initialised.
"""

import os

import jax
from jax._src import distributed as jax_distributed
from jax.experimental import multihost_utils

from cps_jax.errors import ConfigError

ENV_VARS = {
    "coordinator_address": "JAX_COORDINATOR_ADDRESS",
    "num_processes": "JAX_NUM_PROCESSES",
    "process_id": "JAX_PROCESS_ID",
}


def _int_or_none(value, source: str):
    if value is None or value == "":
        return None
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"{source}: expected an integer, got {value!r}") from None


def resolve(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    environ=None,
) -> dict:
    """{coordinator_address, num_processes, process_id}: each from its flag, else its environment
    variable, else None."""
    environ = os.environ if environ is None else environ
    address = coordinator_address or environ.get(ENV_VARS["coordinator_address"]) or None
    count = _int_or_none(num_processes, "--num_processes")
    if count is None:
        count = _int_or_none(environ.get(ENV_VARS["num_processes"]), ENV_VARS["num_processes"])
    index = _int_or_none(process_id, "--process_id")
    if index is None:
        index = _int_or_none(environ.get(ENV_VARS["process_id"]), ENV_VARS["process_id"])
    if count is not None and count < 1:
        raise ValueError(
            f"--num_processes / {ENV_VARS['num_processes']}: must be >= 1, got {count}"
        )
    if index is not None and count is not None and not 0 <= index < count:
        raise ValueError(
            f"--process_id / {ENV_VARS['process_id']}={index} must be in [0, {count}) "
            f"for {count} processes"
        )
    return {"coordinator_address": address, "num_processes": count, "process_id": index}


def initialize(*args, **kwargs) -> bool:
    """Joins this process to a multi-process run; True if it did. Call before any JAX computation.
    Takes the arguments of `resolve`, which finds the three parameters.

    All three parameters given: exactly those, with cluster auto-detection off (so every local
    device stays visible: one process per host). Some given: JAX fills in the rest from the cluster.
    None given: JAX's auto-detection, and a plain single process when there is no cluster.
    """
    params = resolve(*args, **kwargs)
    given = {k: v for k, v in params.items() if v is not None}
    if params["num_processes"] == 1:
        return False  # one process: nothing to join
    if len(given) == len(params):
        jax.distributed.initialize(**params, cluster_detection_method="deactivate")
        return True
    try:
        jax.distributed.initialize(**given)
    except ValueError as error:
        if given:
            raise ValueError(
                f"distributed start-up: {error} No cluster environment supplied the rest of "
                "--coordinator_address, --num_processes, --process_id (or JAX_COORDINATOR_ADDRESS, "
                "JAX_NUM_PROCESSES, JAX_PROCESS_ID); got "
                + ", ".join(f"{k}={v}" for k, v in given.items())
            ) from error
        if "coordinator_address" not in str(error):
            raise
        return False  # no flags, no environment, no cluster: a single process
    return True


def is_main_process() -> bool:
    """Process 0 logs, prints and writes images and result files; every process checkpoints."""
    return jax.process_index() == 0


def print_main(*args) -> None:
    if is_main_process():
        print(*args, flush=True)


# How long a process waits at a host-side barrier for the others (e.g. while process 0 prepares a
# data set: minutes for a real one).
BARRIER_TIMEOUT_S = 3 * 3600


def barrier(name: str, timeout_s: float = BARRIER_TIMEOUT_S) -> None:
    """Waits until every process has reached `barrier(name)`.

    Through the coordination service, which waits as long as asked. A device collective
    (`multihost_utils.sync_global_devices`) would do, but on the CPU the first one also sets up the
    gloo context, whose connection wait is a fixed 30 s: a process that arrives later than that
    (still preparing the data set, say) fails the run with DEADLINE_EXCEEDED.
    """
    client = jax_distributed.global_state.client
    if client is None:  # not started through jax.distributed: a device barrier is all there is
        multihost_utils.sync_global_devices(name)
        return
    client.wait_at_barrier(name, timeout_in_ms=int(timeout_s * 1000))


def process_zero_first(fn, name: str):
    """fn() on process 0 first, then on the others once it is done (a barrier over all processes).

    Preparing a data set this way writes a shared directory exactly once; a host whose disk is its
    own finds nothing there afterwards and prepares its own copy.
    """
    if jax.process_count() == 1:
        return fn()
    if is_main_process():
        try:
            return fn()
        finally:  # release the others even if process 0 failed: they then report their own error
            barrier(name)
    barrier(name)
    return fn()


_shared_outcomes = 0  # keys of the coordination service are set once: each call has its own


def on_main_process(fn, name: str):
    """fn() on process 0 only (None elsewhere). An error it raises is raised on every process, a
    ConfigError as a ConfigError with the same message, so that all of them stop together rather
    than wait for process 0."""
    if jax.process_count() == 1:
        return fn()
    global _shared_outcomes
    _shared_outcomes += 1
    key = f"cps_jax/{name}/{_shared_outcomes}"
    client = jax_distributed.global_state.client
    if is_main_process():
        try:
            result = fn()
        except Exception as error:
            if client is not None:
                kind = "config" if isinstance(error, ConfigError) else "other"
                client.key_value_set(key, f"{kind}:{error}")
            raise
        if client is not None:
            client.key_value_set(key, "ok:")
        return result
    if client is not None:
        kind, _, message = client.blocking_key_value_get(
            key, int(BARRIER_TIMEOUT_S * 1000)
        ).partition(":")
        if kind == "config":
            raise ConfigError(message)
        if kind == "other":
            raise RuntimeError(f"process 0 failed: {message}")
    return None


class CompiledTogether:
    """A jitted function whose every compilation ends at a barrier over all processes.

    On the CPU, a program's first cross-process collective waits a fixed 30 s (gloo) for the
    peers: a process that compiles the program more slowly than that (a busy host) would fail the
    run with DEADLINE_EXCEEDED, or hang it. Compiling ahead of the first call and meeting at a
    barrier afterwards bounds the skew to the program's run time. One process: the jitted function
    itself.
    """

    def __init__(self, jitted, name: str):
        self.jitted, self.name = jitted, name
        self._compiled = {}

    def __call__(self, *args):
        if jax.process_count() == 1:
            return self.jitted(*args)
        leaves, treedef = jax.tree.flatten(args)
        key = (treedef, tuple((x.shape, x.dtype, getattr(x, "sharding", None)) for x in leaves))
        compiled = self._compiled.get(key)
        if compiled is None:
            compiled = self.jitted.lower(*args).compile()
            barrier(f"{self.name} compiled ({len(self._compiled)})")
            self._compiled[key] = compiled
        return compiled(*args)
