"""The optimizers against their update rules written out in NumPy."""

import ml_collections
import numpy as np
import optax
import pytest

from cps_jax import optim

TOTAL_STEPS = 10


def optim_config(name, lr=0.1, momentum=0.9, weight_decay=0.01):
    return ml_collections.ConfigDict(
        dict(
            name=name,
            lr=lr,
            momentum=momentum,
            weight_decay=weight_decay,
            poly_power=0.9,
            warmup_steps=0,
            lr_scaling="none",
            classifier_lr=1.0,
        )
    )


def poly_lr(config, t):
    return config.lr * (1 - t / TOTAL_STEPS) ** config.poly_power


def params_and_grads(seed):
    rng = np.random.default_rng(seed)
    params = {"conv": {"kernel": rng.normal(size=(3, 3, 2, 4)), "bias": rng.normal(size=4)}}
    grads = [
        {"conv": {"kernel": rng.normal(size=(3, 3, 2, 4)), "bias": rng.normal(size=4)}}
        for _ in range(3)
    ]
    return params, grads


def assert_optax_gives(config, params, grads, expected):
    """optim.make(config)'s optimizer applied to `grads` from `params` ends at `expected` (per leaf)."""
    tx, _ = optim.make(config, TOTAL_STEPS)
    state = tx.init(params)
    for g in grads:
        updates, state = tx.update(g, state, params)
        params = optax.apply_updates(params, updates)
    for leaf in expected:
        np.testing.assert_allclose(params["conv"][leaf], expected[leaf], rtol=1e-5, atol=1e-6)


def test_sgd_is_pytorchs_sgd_with_l2_on_kernels_only():
    config = optim_config("sgd")
    params, grads = params_and_grads(0)
    expected, velocity = {}, {}
    for leaf in ("kernel", "bias"):
        w, buf = params["conv"][leaf].copy(), 0.0
        for t, g in enumerate(grads):
            d = g["conv"][leaf] + (config.weight_decay * w if leaf == "kernel" else 0.0)
            buf = config.momentum * buf + d
            w = w - poly_lr(config, t) * buf
        expected[leaf] = w
    assert_optax_gives(config, params, grads, expected)


def test_adamw_decays_kernels_decoupled_from_the_gradient():
    config = optim_config("adamw", lr=0.01)
    params, grads = params_and_grads(1)
    b1, b2, eps = config.momentum, 0.999, 1e-8
    expected = {}
    for leaf in ("kernel", "bias"):
        w, m, v = params["conv"][leaf].copy(), 0.0, 0.0
        for t, g in enumerate(grads):
            g = g["conv"][leaf]
            m, v = b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * g * g
            step = (m / (1 - b1 ** (t + 1))) / (np.sqrt(v / (1 - b2 ** (t + 1))) + eps)
            if leaf == "kernel":
                step = step + config.weight_decay * w
            w = w - poly_lr(config, t) * step
        expected[leaf] = w
    assert_optax_gives(config, params, grads, expected)


def test_an_unknown_optimizer_is_named():
    with pytest.raises(
        ValueError, match=r"config.optim.name must be one of \('sgd', 'adamw'\), got 'adam'"
    ):
        optim.make(optim_config("adam"), TOTAL_STEPS)


@pytest.mark.parametrize("warmup", [0, 3])
def test_schedule_is_float64_in_a_float64_run(warmup):
    """optax divides the int32 step count in float32 even with jax_enable_x64; the schedule
    casts the count first, so that a float64 run gets its learning rate unrounded."""
    import jax
    import jax.numpy as jnp

    from cps_jax.optim import learning_rate_schedule

    config = optim_config("sgd", lr=0.01)
    config.warmup_steps = warmup
    before = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    try:
        schedule = learning_rate_schedule(config, TOTAL_STEPS)
        for t in range(warmup, TOTAL_STEPS):
            lr = schedule(jnp.asarray(t, jnp.int32))
            want = config.lr * (1 - (t - warmup) / (TOTAL_STEPS - warmup)) ** config.poly_power
            assert lr.dtype == jnp.float64 and abs(float(lr) - want) <= 1e-15, t
    finally:
        jax.config.update("jax_enable_x64", before)
    assert (
        learning_rate_schedule(config, TOTAL_STEPS)(jnp.asarray(1, jnp.int32)).dtype == jnp.float32
    )


@pytest.mark.parametrize("name", ["sgd", "adamw"])
def test_classifier_lr_multiplies_the_classifiers_steps_only(name):
    rng = np.random.default_rng(3)
    tree = lambda: {  # noqa: E731
        "conv": {"kernel": rng.normal(size=(2, 3))},
        "classifier": {"kernel": rng.normal(size=(3, 2)), "bias": rng.normal(size=2)},
    }
    params, grads = tree(), [tree() for _ in range(3)]

    def run(factor):
        config = optim_config(name, weight_decay=0.0)  # decay would read the diverged weights
        config.classifier_lr = factor
        tx, _ = optim.make(config, TOTAL_STEPS)
        state, p = tx.init(params), params
        steps = []
        for g in grads:
            updates, state = tx.update(g, state, p)
            p = optax.apply_updates(p, updates)
            steps.append(updates)
        return steps

    plain, scaled = run(1.0), run(10.0)
    for a, b in zip(plain, scaled):  # SGD (momentum) and AdamW steps are linear in the lr
        np.testing.assert_allclose(b["conv"]["kernel"], a["conv"]["kernel"], rtol=1e-6)
        for leaf in ("kernel", "bias"):
            np.testing.assert_allclose(b["classifier"][leaf], 10 * a["classifier"][leaf], rtol=1e-5)
