"""CycleGAN's train step: one pure function (state, batch, rng) -> (state, metrics), jitted by
the caller (with donation and shardings, as cps_jax/train_step.py's).

batch: {"source": [N, H, W, C], "target": [M, H, W, C]} images in [-1, 1] (unpaired).

One step does what the official optimize_parameters does, from the same parameters:
  generators: G and F minimise adversarial (LS-GAN, against D_T and D_S) + cycle + identity
              losses; the discriminators enter as constants (stop_gradient), like its
              set_requires_grad(D, False);
  discriminators: D_T on real targets against G(s), D_S on real sources against F(t), the fakes
              from this step's generator forward (before the update) through the history pools,
              as constants (the original's fake.detach()).
The two objectives are summed and differentiated once (the fakes are computed once); the
stop_gradients make each net's gradient that of its own phase alone, and each net is updated
with its own optimizer state.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from cps_jax.cyclegan import losses, nets, pool
from cps_jax.cyclegan.state import NETS
from cps_jax.cyclegan.state import graphdefs as make_graphdefs
from cps_jax.state import TrainState


def _runner(graphdefs, params):
    """run(name, *batches): net `name` on each batch, as ONE call on their concatenation (one
    output per batch). Instance norm is per image, so that is the same as a call per batch;
    fewer, larger calls keep an accelerator busier (the paper's batch is 1 image)."""

    def run(name, *batches):
        joined = jnp.concatenate(batches) if len(batches) > 1 else batches[0]
        out = nets.apply(graphdefs[name], params[name], joined)
        if len(batches) == 1:
            return out
        return tuple(jnp.split(out, np.cumsum([len(b) for b in batches[:-1]])))

    return run


def generator_objective(params, batch, graphdefs, loss_config) -> tuple:
    """(loss of G and F, (fakes {"S": F(t), "T": G(s)}, metrics)). `params`: all four nets;
    the discriminators' are constants here, so their gradient is exactly zero."""
    frozen = {name: jax.lax.stop_gradient(params[name]) for name in ("D_S", "D_T")}
    run = _runner(graphdefs, {**params, **frozen})
    weight = loss_config.cycle_weight
    identity_weight = loss_config.identity_fraction * weight
    s, t = batch["source"], batch["target"]
    if identity_weight > 0:  # static: the identity images only when they count
        fake_t, same_t = run("G", s, t)  # G(t) should stay t
        fake_s, same_s = run("F", t, s)
    else:
        fake_t, fake_s = run("G", s), run("F", t)
    rec_s, rec_t = run("F", fake_t), run("G", fake_s)
    terms = {
        "g_adv": losses.lsgan_generator_loss(run("D_T", fake_t)),
        "f_adv": losses.lsgan_generator_loss(run("D_S", fake_s)),
        "cycle_s": losses.cycle_loss(rec_s, s, weight),
        "cycle_t": losses.cycle_loss(rec_t, t, weight),
    }
    if identity_weight > 0:
        terms["identity_t"] = losses.identity_loss(same_t, t, identity_weight)
        terms["identity_s"] = losses.identity_loss(same_s, s, identity_weight)
    total = sum(terms.values())
    metrics = {
        **terms,
        "gen_loss": total,
        # The cycle reconstruction error, unweighted: mean |F(G(s)) - s|, mean |G(F(t)) - t|.
        "rec_error_s": losses.l1(rec_s, s),
        "rec_error_t": losses.l1(rec_t, t),
    }
    return total, ({"S": fake_s, "T": fake_t}, metrics)


def discriminator_objective(params, batch, fakes, graphdefs) -> tuple:
    """(loss of D_S and D_T, metrics) on real images and `fakes` {"S", "T"} (pool samples);
    the fakes are constants here, so the generators' gradient is exactly zero."""
    fakes = jax.lax.stop_gradient(fakes)
    run = _runner(graphdefs, params)
    d_s = losses.lsgan_discriminator_loss(*run("D_S", batch["source"], fakes["S"]))
    d_t = losses.lsgan_discriminator_loss(*run("D_T", batch["target"], fakes["T"]))
    return d_s + d_t, {"d_s": d_s, "d_t": d_t}


def query_pools(pools: dict, fakes: dict, rng: jax.Array) -> tuple[dict, dict]:
    """(new pools, the fakes the discriminators see): each side's pool queried with its own
    draws (fold_in(rng, 0) for "S", 1 for "T")."""
    new_pools, pooled = {}, {}
    for i, side in enumerate("ST"):
        key = jax.random.fold_in(rng, i)
        side_draws = pool.draws(key, fakes[side].shape[0], pool.pool_size(pools[side]))
        new_pools[side], pooled[side] = pool.query(pools[side], fakes[side], side_draws)
    return new_pools, pooled


def make_train_step(config, tx: optax.GradientTransformation, schedule: optax.Schedule):
    """step(state, batch, rng) -> (state, metrics); `rng` a key (typed or raw key data), a new
    one each step (e.g. fold_in(run key, step): a resumed run then draws the same)."""
    graphdefs = make_graphdefs(config.model)
    loss_config = config.loss

    def loss_fn(params, batch, pools, rng):
        gen_loss, (fakes, metrics) = generator_objective(params, batch, graphdefs, loss_config)
        pools, pooled = query_pools(pools, jax.lax.stop_gradient(fakes), rng)
        disc_loss, disc_metrics = discriminator_objective(params, batch, pooled, graphdefs)
        return gen_loss + disc_loss, (pools, {**metrics, **disc_metrics})

    def step(state: TrainState, batch, rng):
        params = {name: state.nets[name]["params"] for name in NETS}
        grads, (pools, metrics) = jax.grad(loss_fn, has_aux=True)(
            params, batch, state.extra["pools"], rng
        )
        new_nets, opt_states = {}, {}
        for name in NETS:
            updates, opt_states[name] = tx.update(grads[name], state.opt_states[name], params[name])
            new_nets[name] = {"params": optax.apply_updates(params[name], updates)}
        metrics["lr"] = schedule(state.step)
        new_state = TrainState(
            step=state.step + 1,
            nets=new_nets,
            opt_states=opt_states,
            extra={**state.extra, "pools": pools},
        )
        return new_state, metrics

    return step
