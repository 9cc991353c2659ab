"""A net as pure pytrees and functions: (graphdef, params, batch_stats) as plain nested dicts.

The one shape of a net everywhere (training, evaluation, export, checkpoints):
{"params": ..., "batch_stats": ...}.
"""

from flax import nnx

from cps_jax.models.deeplab import build_model


def init_net(model_config, num_classes: int, seed) -> tuple:
    """Builds one net and splits it into (graphdef, params, batch_stats)."""
    model = build_model(model_config, num_classes, nnx.Rngs(seed))
    graphdef, params, batch_stats = nnx.split(model, nnx.Param, nnx.BatchStat)
    return graphdef, nnx.to_pure_dict(params), nnx.to_pure_dict(batch_stats)


def net_graphdef(model_config, num_classes: int):
    """The static structure of a net, without allocating its parameters."""
    return nnx.split(nnx.eval_shape(lambda: build_model(model_config, num_classes, nnx.Rngs(0))))[0]


def apply_net(graphdef, params, batch_stats, images, *, train: bool):
    """Runs one net as a pure function; returns logits and the (possibly updated) BN statistics."""
    model = nnx.merge(graphdef, params, batch_stats)
    logits = model(images, train=train)
    return logits, nnx.to_pure_dict(nnx.state(model, nnx.BatchStat))
