"""The CPS pair as pure pytrees: two nets of one architecture, `left` and `right`, no shared module."""

import dataclasses
from typing import Any

import flax
import jax
import jax.numpy as jnp
import optax
from flax import nnx

from cps_jax.models import build_model, pretrained


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
    # Method state beside the nets (e.g. pseudo.balance="align"'s running class shares).
    extra: Any = dataclasses.field(default_factory=dict)


def init_net(model_config, num_classes: int, seed: int | jax.Array):
    """Builds one net and splits it into (graphdef, params, batch_stats) as plain nested dicts."""
    model = build_model(model_config, num_classes, nnx.Rngs(seed))
    graphdef, params, batch_stats = nnx.split(model, nnx.Param, nnx.BatchStat)
    return graphdef, nnx.to_pure_dict(params), nnx.to_pure_dict(batch_stats)


def net_graphdef(model_config, num_classes: int):
    """The static structure of a net, without allocating its parameters."""
    return nnx.split(nnx.eval_shape(lambda: build_model(model_config, num_classes, nnx.Rngs(0))))[0]


# What `right` is, per training method: a second trained net, an EMA teacher, or absent.
RIGHT_ROLE = {
    "cps": "net",
    "cps_cutmix": "net",
    "supervised": None,
    "mean_teacher": "teacher",
    "cutmix_seg": "teacher",
}


def create_train_state(
    model_config,
    num_classes: int,
    tx: optax.GradientTransformation,
    rng: jax.Array,
    method: str = "cps",
    extra: dict | None = None,
) -> TrainState:
    """The nets of `method`. CPS: two nets from different rng streams (left: fold 0, right: fold 1),
    each with its own optimizer state. Teacher methods: the teacher starts as a copy of the student
    and has no optimizer state. Supervised: the left net only."""

    backbone = pretrained.load_for_model(model_config)  # None unless model.pretrained is set

    def one(seed):
        _, params, stats = init_net(model_config, num_classes, seed)
        if backbone is not None:  # the same pretrained backbone in every net; heads stay random
            source = f"model.pretrained={model_config.pretrained}"
            params, stats = pretrained.replace_backbone(params, stats, backbone, source)
        return NetState(params=params, batch_stats=stats, opt_state=tx.init(params))

    if method not in RIGHT_ROLE:
        raise ValueError(f"config.method: {method!r} is not one of {tuple(RIGHT_ROLE)}")
    left = one(jax.random.fold_in(rng, 0))
    role = RIGHT_ROLE[method]
    if role == "net":
        right = one(jax.random.fold_in(rng, 1))
    elif role == "teacher":
        right = NetState(params=left.params, batch_stats=left.batch_stats, opt_state=None)
    else:
        right = None
    return TrainState(step=jnp.zeros((), jnp.int32), left=left, right=right, extra=extra or {})


def apply_net(graphdef, params, batch_stats, images: jax.Array, *, train: bool):
    """Runs one net as a pure function; returns logits and the (possibly updated) BN statistics."""
    model = nnx.merge(graphdef, params, batch_stats)
    logits = model(images, train=train)
    return logits, nnx.to_pure_dict(nnx.state(model, nnx.BatchStat))
