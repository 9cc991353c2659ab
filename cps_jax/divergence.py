"""Stops a run whose loss or gradients stop being sane numbers, without a host sync per step.

`guard` wraps a train step in the same jitted program: every step checks its loss and gradient
norm on the device, and the first bad step is recorded in `Health`, a few scalars that travel
beside the state. From then on the step leaves the state as it was, so the state in hand is the
last finite one. The trainer reads `Health` only where it waits for the device anyway (log,
evaluation and checkpoint steps) and stops there, before anything is evaluated or saved.

Bad: a non-finite loss or gradient norm, or a finite blow-up: a loss above `config.max_loss`, or
when that is 0, above MAX_LOSS_FACTOR times the first step's loss (of this process's run).
"""

import math

import jax
import jax.numpy as jnp

from cps_jax.errors import RunError

MAX_LOSS_FACTOR = 1e6


class Diverged(RunError):
    """The run's loss or gradients went non-finite or blew up; the message says where."""


def initial_health() -> dict:
    """No bad step yet (bad_step 0), no first loss yet (first_loss < 0)."""
    return {
        "bad_step": jnp.zeros((), jnp.int32),
        "bad_loss": jnp.zeros((), jnp.float32),
        "bad_grad_norm": jnp.zeros((), jnp.float32),
        "first_loss": jnp.full((), -1.0, jnp.float32),
    }


def loss_limit(first_loss, max_loss: float):
    """The largest sane loss. Relative to the first one, never below MAX_LOSS_FACTOR: a first
    loss near 0 (a resumed, well-trained run) must not make every later one a blow-up."""
    if max_loss > 0:
        return jnp.asarray(max_loss, jnp.float32)
    return MAX_LOSS_FACTOR * jnp.maximum(first_loss, 1.0)


def guard(step_fn, max_loss: float = 0.0):
    """step(state, batch, rng) -> (state, metrics)  =>  guarded(state, health, batch, rng) ->
    (state, health, metrics). `metrics` must hold scalar `loss` and `grad_norm`."""

    def guarded(state, health, batch, rng):
        number = state.step + 1  # of this step, as the trainer counts (1 = the first)
        new_state, metrics = step_fn(state, batch, rng)
        loss = metrics["loss"].astype(jnp.float32)
        grad_norm = metrics["grad_norm"].astype(jnp.float32)
        first = jnp.where(health["first_loss"] < 0, loss, health["first_loss"])
        sane = jnp.isfinite(loss) & jnp.isfinite(grad_norm) & (loss <= loss_limit(first, max_loss))
        already_bad = health["bad_step"] > 0
        keep_new = sane & ~already_bad
        # Sticky: once a step is bad, the state stays the last finite one.
        state = jax.tree.map(lambda n, o: jnp.where(keep_new, n, o), new_state, state)
        newly_bad = ~sane & ~already_bad
        health = {
            "bad_step": jnp.where(newly_bad, number, health["bad_step"]),
            "bad_loss": jnp.where(newly_bad, loss, health["bad_loss"]),
            "bad_grad_norm": jnp.where(newly_bad, grad_norm, health["bad_grad_norm"]),
            "first_loss": first,
        }
        return state, health, metrics

    return guarded


def describe(health: dict, max_loss: float = 0.0) -> str | None:
    """None if every step was sane, else 'step 23 (loss nan)' naming what was wrong."""
    health = jax.device_get(health)
    step = int(health["bad_step"])
    if not step:
        return None
    loss, grad_norm = float(health["bad_loss"]), float(health["bad_grad_norm"])
    if not math.isfinite(loss):
        what = f"loss {loss}"
    elif not math.isfinite(grad_norm):
        what = f"loss {loss:.4g}, gradient norm {grad_norm}"
    else:
        limit = float(loss_limit(float(health["first_loss"]), max_loss))
        source = "config.max_loss" if max_loss > 0 else f"{MAX_LOSS_FACTOR:.0e} x the first loss"
        what = f"loss {loss:.4g} above {limit:.4g}, {source}"
    return f"step {step} ({what})"
