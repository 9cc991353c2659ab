"""SGD with momentum, decoupled from nothing: the reference's PyTorch SGD, expressed in optax."""

import jax
import optax


def learning_rate_schedule(optim_config, total_steps: int) -> optax.Schedule:
    """Poly decay lr * (1 - t / T) ** power, after an optional linear warmup from 0."""
    warmup = int(optim_config.warmup_steps)
    poly = optax.polynomial_schedule(
        init_value=optim_config.lr,
        end_value=0.0,
        power=optim_config.poly_power,
        transition_steps=max(total_steps - warmup, 1),
    )
    if warmup <= 0:
        return poly
    ramp = optax.linear_schedule(0.0, optim_config.lr, warmup)
    return optax.join_schedules([ramp, poly], boundaries=[warmup])


def weight_decay_mask(params):
    """True for conv / dense kernels only: biases and BatchNorm scales are not decayed (as the reference)."""
    return jax.tree_util.tree_map_with_path(
        lambda path, _: getattr(path[-1], "key", None) == "kernel", params
    )


def make_optimizer(optim_config, total_steps: int) -> optax.GradientTransformation:
    """PyTorch-style SGD: g + wd * w, then momentum, then -lr. One instance serves both nets."""
    return optax.chain(
        optax.add_decayed_weights(optim_config.weight_decay, mask=weight_decay_mask),
        optax.sgd(
            learning_rate_schedule(optim_config, total_steps), momentum=optim_config.momentum
        ),
    )
