"""CycleGAN's train state: the project's TrainState (cps_jax/state.py) with four nets.

nets        {"G": {"params"}, "F": ..., "D_S": ..., "D_T": ...}: G maps source -> target,
            F target -> source; D_S judges source-domain images, D_T target-domain ones.
            No "batch_stats": instance norm keeps none.
opt_states  one optimizer state per net.
extra       {"pools": {"S": pool of F's fakes (for D_S), "T": pool of G's (for D_T)}}.
"""

import jax
import jax.numpy as jnp
import optax

from cps_jax.cyclegan import nets, pool
from cps_jax.state import TrainState

KINDS = {
    "G": nets.GENERATOR,
    "F": nets.GENERATOR,
    "D_S": nets.DISCRIMINATOR,
    "D_T": nets.DISCRIMINATOR,
}
NETS = tuple(KINDS)


def graphdefs(model_config) -> dict:
    """{net name: graphdef} (static structure, nothing allocated)."""
    by_kind = {
        kind: nets.net_graphdef(model_config, kind) for kind in dict.fromkeys(KINDS.values())
    }
    return {name: by_kind[kind] for name, kind in KINDS.items()}


def init_nets(model_config, rng: jax.Array) -> dict:
    """{name: {"params"}}; the i-th net of NETS draws from fold_in(rng, i)."""
    return {
        name: {"params": nets.init_net(model_config, kind, jax.random.fold_in(rng, i))[1]}
        for i, (name, kind) in enumerate(KINDS.items())
    }


def init_state(config, tx: optax.GradientTransformation, rng: jax.Array) -> TrainState:
    """Step 0: new nets, their optimizer states and two empty pools of `config.pool_size`
    images of config.image_size. Built in one jitted program (eager NNX init runs op by op)."""
    model_config = config.model
    shape = (config.image_size, config.image_size, model_config.channels)

    def build(rng):
        net_params = init_nets(model_config, rng)
        return TrainState(
            step=jnp.zeros((), jnp.int32),
            nets=net_params,
            opt_states={name: tx.init(net["params"]) for name, net in net_params.items()},
            extra={"pools": {side: pool.init_pool(config.pool_size, shape) for side in "ST"}},
        )

    return jax.jit(build)(rng)


def abstract_state(config, tx: optax.GradientTransformation) -> TrainState:
    """The state's shapes and dtypes (for an Orbax restore target), nothing allocated."""
    return jax.eval_shape(lambda k: init_state(config, tx, k), jax.random.key(0))
