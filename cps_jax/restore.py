"""A run's nets from one of its checkpoints: what cps-eval, cps-export and cps-predict read.

Only the nets (parameters and BatchNorm statistics), never the optimizer state: a run can be
evaluated or exported without building its optimizer.
"""

import jax

from cps_jax import checkpointing, parallel
from cps_jax.state import init_nets
from cps_jax.trainer import checkpoint_dir


def abstract_nets(config, num_classes: int, sharding):
    """Shapes of the nets' params and BN statistics (TrainState.nets), without an optimizer."""
    # Shapes only: the pretrained weights (same shapes) need not be read, nor still exist. (Set
    # both fields: a run saved before pretrained_heads existed has no such field.)
    model_config = config.model.copy_and_resolve_references()
    model_config.pretrained, model_config.pretrained_heads = "", False
    rng = jax.random.key_data(jax.random.key(0))
    shapes = jax.eval_shape(lambda: init_nets(model_config, num_classes, rng, config.method))
    return checkpointing.abstract_like(shapes, sharding)


def restore_nets(config, workdir: str, num_classes: int, mesh, step="latest"):
    """(step, nets): the nets' params and BN statistics only, never the optimizer state. For
    'latest', a checkpoint that cannot be read gives way to the one before, with a warning."""
    checkpointer = checkpointing.Checkpointer(checkpoint_dir(workdir), read_only=True)
    resolved = checkpointer.resolve_step(step)
    older = [s for s in sorted(checkpointer.all_steps(), reverse=True) if s < resolved]
    abstract = abstract_nets(config, num_classes, parallel.replicated(mesh))
    found, nets, failures = checkpointing.restore_newest(
        [resolved] + (older if step == "latest" else []),
        lambda s: checkpointing.check_finite(checkpointer.restore_nets(s, abstract)),
        checkpointer.directory,
    )
    for bad, reason in failures:
        checkpointing.warn(
            f"checkpoint step {bad} in {checkpointer.directory} cannot be read ({reason}); "
            f"using step {found}"
        )
    return found, nets
