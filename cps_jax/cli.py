"""What the command-line entry points do, as plain functions (tests call these directly)."""

import os
import time

import jax

from cps_jax import checkpointing, datasets, parallel
from cps_jax.evaluate import Evaluator, nets_of
from cps_jax.optim import make_optimizer
from cps_jax.state import create_train_state, net_graphdef
from cps_jax.trainer import Trainer, checkpoint_dir, write_results


class ConfigError(ValueError):
    """A config, flag or input file that is wrong in a way the user can fix."""


def _banner(workdir: str) -> None:
    print(
        f"JAX {jax.__version__} on {jax.device_count()} {jax.devices()[0].platform} device(s), "
        f"{jax.process_count()} process(es); workdir {os.path.abspath(workdir)}",
        flush=True,
    )


def train(config, workdir: str) -> dict:
    start = time.perf_counter()
    _banner(workdir)
    results = Trainer(config, workdir).train()
    print(f"Done in {time.perf_counter() - start:.0f}s.", flush=True)
    return results


def abstract_nets(config, num_classes: int, sharding):
    """Shapes of both nets' params and BN statistics, as saved inside a TrainState."""
    tx = make_optimizer(config.optim, config.total_steps)
    shapes = jax.eval_shape(
        lambda: create_train_state(
            config.model, num_classes, tx, jax.random.key_data(jax.random.key(0))
        )
    )
    return checkpointing.abstract_like(nets_of(shapes), sharding)


def restore_nets(config, workdir: str, num_classes: int, mesh, step="latest"):
    """(step, nets): the nets' params and BN statistics only, never the optimizer state."""
    checkpointer = checkpointing.Checkpointer(checkpoint_dir(workdir), read_only=True)
    step = checkpointer.resolve_step(step)
    nets = checkpointer.restore_subtree(
        step, abstract_nets(config, num_classes, parallel.replicated(mesh))
    )
    return step, nets


def evaluate_checkpoint(config, workdir: str, *, step="latest", split: str = "validation"):
    mesh = parallel.make_mesh()
    data = datasets.load(config.data)
    step, nets = restore_nets(config, workdir, data.num_classes, mesh, step)
    evaluator = Evaluator(
        net_graphdef(config.model, data.num_classes),
        data,
        split=split,
        batch_size=config.eval_batch_size,
        mesh=mesh,
        worker_threads=config.data.worker_threads,
    )
    results, _ = evaluator.run(nets)
    return step, data, results


def evaluate(config, workdir: str, *, step="latest", split: str = "validation") -> dict:
    _banner(workdir)
    try:
        step, data, results = evaluate_checkpoint(config, workdir, step=step, split=split)
    except FileNotFoundError as error:
        raise ConfigError(str(error)) from error
    if jax.process_index() == 0:
        write_results(workdir, data.class_names, results, step=step, name=f"eval_{split}_{step}")
    return results


def prepare(config) -> None:
    data = datasets.load(config.data)
    print(
        f"{data.name}: {len(data.train)} train, {len(data.validation)} validation examples in "
        f"{datasets.resolve_data_dir(config.data)}",
        flush=True,
    )
