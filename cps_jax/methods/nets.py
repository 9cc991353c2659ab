"""The nets as pure functions for a method's loss: one net on a list of image batches, or a pair of
nets on the same batches, with the execution options of the config (remat, joint BN, fused pair)."""

import dataclasses
import functools
from typing import Callable

import jax
import jax.numpy as jnp

from cps_jax.models.functional import apply_net

REMAT_POLICIES = {
    "none": None,
    # Keep only the forward's inputs; the backward pass recomputes the whole net (+1 forward).
    "full": jax.checkpoint_policies.nothing_saveable,
    # Keep matmul outputs (convs under conv_impl "patches"), recompute the cheap elementwise ops.
    "dots": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
}


def net_fn(graphdef, remat: str = "none"):
    """apply_net for `graphdef`, rematerialised in the backward pass as `remat` says."""
    if remat not in REMAT_POLICIES:
        raise ValueError(f"config.remat must be one of {tuple(REMAT_POLICIES)}, got {remat!r}")
    fn = functools.partial(apply_net, graphdef)
    if remat == "none":
        return fn
    policy = REMAT_POLICIES[remat]

    def apply(params, batch_stats, images, *, train: bool):
        return jax.checkpoint(functools.partial(fn, train=train), policy=policy)(
            params, batch_stats, images
        )

    return apply


def run_net(apply, params, batch_stats, images: list, *, train: bool, joint_bn: bool):
    """Logits for each image batch in `images`. Separate forward calls (the reference) normalise each
    batch with its own BN statistics; `joint_bn` uses one call over their concatenation."""
    if joint_bn and len(images) > 1:
        logits, batch_stats = apply(params, batch_stats, jnp.concatenate(images), train=train)
        bounds = [sum(x.shape[0] for x in images[:i]) for i in range(1, len(images))]
        return jnp.split(logits, bounds), batch_stats
    outputs = []
    for x in images:
        logits, batch_stats = apply(params, batch_stats, x, train=train)
        outputs.append(logits)
    return outputs, batch_stats


def run_pair(run, params: dict, stats: dict, images: list, *, train: bool, fuse: bool):
    """Both nets ("left", "right") on the same image batches -> ({net: [logits per batch]},
    {net: new batch_stats}). `fuse` stacks the two nets' trees and runs them as one vmapped
    program: one batched matmul per layer instead of two, the same numbers."""
    nets = ("left", "right")
    if not fuse:
        out = {net: run(params[net], stats[net], images, train=train) for net in nets}
        return {net: o[0] for net, o in out.items()}, {net: o[1] for net, o in out.items()}
    stack = lambda *trees: jax.tree.map(lambda *leaves: jnp.stack(leaves), *trees)
    logits, new_stats = jax.vmap(lambda p, s: run(p, s, images, train=train))(
        stack(*(params[n] for n in nets)), stack(*(stats[n] for n in nets))
    )
    return (
        {net: [x[i] for x in logits] for i, net in enumerate(nets)},
        {net: jax.tree.map(lambda leaf, i=i: leaf[i], new_stats) for i, net in enumerate(nets)},
    )


@dataclasses.dataclass(frozen=True)
class NetTools:
    """`run(params, stats, [images...], train=)` -> ([logits...], new stats) for one net;
    `pair(params, stats, [images...], train=)` -> ({net: [logits...]}, {net: new stats}) for
    "left" and "right" together."""

    run: Callable
    pair: Callable

    @classmethod
    def from_config(cls, graphdef, config) -> "NetTools":
        apply = net_fn(graphdef, config.remat)
        run = functools.partial(run_net, apply, joint_bn=bool(config.loss.joint_bn))
        pair = functools.partial(run_pair, run, fuse=bool(config.fuse_pair))
        return cls(run=run, pair=pair)
