"""The CPS pair as pure pytrees: two nets of one architecture, `left` and `right`, no shared module."""

from typing import Any

import flax
import jax
import jax.numpy as jnp
import optax
from flax import nnx

from cps_jax.models import build_model


@flax.struct.dataclass
class NetState:
    params: Any
    batch_stats: Any
    opt_state: Any


@flax.struct.dataclass
class TrainState:
    step: jax.Array
    left: NetState
    right: NetState


def init_net(model_config, num_classes: int, seed: int | jax.Array):
    """Builds one net and splits it into (graphdef, params, batch_stats) as plain nested dicts."""
    model = build_model(model_config, num_classes, nnx.Rngs(seed))
    graphdef, params, batch_stats = nnx.split(model, nnx.Param, nnx.BatchStat)
    return graphdef, nnx.to_pure_dict(params), nnx.to_pure_dict(batch_stats)


def net_graphdef(model_config, num_classes: int):
    """The static structure of a net, without allocating its parameters."""
    return nnx.split(nnx.eval_shape(lambda: build_model(model_config, num_classes, nnx.Rngs(0))))[0]


def create_train_state(
    model_config, num_classes: int, tx: optax.GradientTransformation, rng: jax.Array
) -> TrainState:
    """Both nets from different rng streams (left: fold 0, right: fold 1) with their own optimizer state."""

    def one(seed):
        _, params, stats = init_net(model_config, num_classes, seed)
        return NetState(params=params, batch_stats=stats, opt_state=tx.init(params))

    return TrainState(
        step=jnp.zeros((), jnp.int32),
        left=one(jax.random.fold_in(rng, 0)),
        right=one(jax.random.fold_in(rng, 1)),
    )


def apply_net(graphdef, params, batch_stats, images: jax.Array, *, train: bool):
    """Runs one net as a pure function; returns logits and the (possibly updated) BN statistics."""
    model = nnx.merge(graphdef, params, batch_stats)
    logits = model(images, train=train)
    return logits, nnx.to_pure_dict(nnx.state(model, nnx.BatchStat))
