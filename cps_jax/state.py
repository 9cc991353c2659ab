"""The train state: one tree for every method.

    TrainState(step, nets={name: {"params", "batch_stats"}}, opt_states={trained name: ...}, extra)

`nets` is also what evaluation, export and checkpoint restore read and write (a net's shape in
cps_jax/models/functional.py); which nets there are and which are trained is the method's
(cps_jax/methods): CPS trains "left" and "right", Mean Teacher trains "left" and keeps an EMA
teacher "right", supervised has "left" only.
"""

import dataclasses
from typing import Any

import flax
import jax
import jax.numpy as jnp
import optax

from cps_jax import methods
from cps_jax.models import pretrained
from cps_jax.models.functional import apply_net, init_net, net_graphdef  # noqa: F401


@flax.struct.dataclass
class TrainState:
    step: jax.Array
    nets: dict  # {name: {"params": ..., "batch_stats": ...}}
    opt_states: dict  # {name: optimizer state} of the trained nets
    # Method state beside the nets (e.g. pseudo.balance="align"'s running class shares).
    extra: Any = dataclasses.field(default_factory=dict)


def init_nets(model_config, num_classes: int, rng: jax.Array, method: str = "cps") -> dict:
    """{name: {params, batch_stats}} of `method`'s nets. Each net has its own rng stream (the
    i-th net of `Method.nets`: fold i), a copy starts as its original; with `model.pretrained`
    every net starts from the same backbone, the heads stay random (or, with
    `model.pretrained_heads`, from the same whole net of a cps-export file)."""
    spec = methods.get(method)
    whole = bool(model_config.pretrained_heads)
    if whole and not str(model_config.pretrained).endswith(".cpsj"):
        raise ValueError(
            f"model.pretrained_heads needs a cps-export file (.cpsj) as model.pretrained, got "
            f"{model_config.pretrained!r}"
        )
    # None unless model.pretrained is set; the whole net is read below instead.
    backbone = None if whole else pretrained.load_for_model(model_config)

    def one(seed):
        _, params, stats = init_net(model_config, num_classes, seed)
        if whole:
            params, stats = pretrained.whole_net_of_export(model_config.pretrained, params, stats)
        elif backbone is not None:
            source = f"model.pretrained={model_config.pretrained}"
            params, stats = pretrained.replace_backbone(params, stats, backbone, source)
        return {"params": params, "batch_stats": stats}

    nets = {}
    for i, name in enumerate(spec.nets):
        original = spec.copies.get(name)
        nets[name] = nets[original] if original else one(jax.random.fold_in(rng, i))
    return nets


def create_train_state(
    model_config,
    num_classes: int,
    tx: optax.GradientTransformation,
    rng: jax.Array,
    method: str = "cps",
    extra: dict | None = None,
) -> TrainState:
    """Step 0 of `method`: its nets (init_nets), an optimizer state per trained net."""
    nets = init_nets(model_config, num_classes, rng, method)
    trained = methods.get(method).trained
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        nets=nets,
        opt_states={name: tx.init(nets[name]["params"]) for name in trained},
        extra=extra or {},
    )
