"""The optimizers: the reference's PyTorch SGD with momentum (default), or AdamW, in optax.

`optim.name`:
  "sgd"   the reference: g + wd * w (L2 in the gradient), momentum, -lr.
  "adamw" Adam with decoupled weight decay (lr * wd * w), for short runs from random
          initialisation, where SGD is slow to get going; `optim.momentum` is Adam's b1.
Both decay only conv / dense kernels and follow the same lr schedule. `optim.classifier_lr`
multiplies the learning rate of the final classifier (1: as the rest; the PCT authors use 10).
"""

import jax
import jax.numpy as jnp
import optax

LR_SCALING = ("none", "linear")
OPTIMIZERS = ("sgd", "adamw")


def peak_learning_rate(optim_config, global_batch: int | None = None) -> float:
    """The learning rate at the top of the schedule.

    `optim.lr_scaling`:
      "none"   (default): `optim.lr` is the rate for the global batch as configured.
      "linear": `optim.lr` is the rate for `optim.base_batch` labeled images per step and scales
                with the global labeled batch, lr * batch_size_labeled / base_batch, so an override
                of the batch size (or a run on more devices with a larger batch) keeps the lr per
                image. `global_batch` is that labeled batch.
    """
    scaling = optim_config.lr_scaling
    if scaling == "none":
        return float(optim_config.lr)
    if scaling != "linear":
        raise ValueError(f"config.optim.lr_scaling must be one of {LR_SCALING}, got {scaling!r}")
    base = optim_config.base_batch
    if not isinstance(base, int) or base <= 0:
        raise ValueError(
            f"config.optim.base_batch must be a positive integer with lr_scaling='linear' "
            f"(the labeled batch that config.optim.lr is given for), got {base!r}"
        )
    if global_batch is None:
        raise ValueError(
            "config.optim.lr_scaling='linear' needs the global labeled batch "
            "(config.batch_size_labeled): pass global_batch"
        )
    return float(optim_config.lr) * global_batch / base


def learning_rate_schedule(
    optim_config, total_steps: int, global_batch: int | None = None
) -> optax.Schedule:
    """Poly decay lr * (1 - t / T) ** power, after an optional linear warmup from 0.

    lr is `peak_learning_rate(optim_config, global_batch)`.
    """
    lr = peak_learning_rate(optim_config, global_batch)
    warmup = int(optim_config.warmup_steps)
    poly = optax.polynomial_schedule(
        init_value=lr,
        end_value=0.0,
        power=optim_config.poly_power,
        transition_steps=max(total_steps - warmup, 1),
    )
    if warmup <= 0:
        return _float_count(poly)
    ramp = optax.linear_schedule(0.0, lr, warmup)
    return _float_count(optax.join_schedules([ramp, poly], boundaries=[warmup]))


def _float_count(schedule: optax.Schedule) -> optax.Schedule:
    """`schedule` of the step count as a float of the default type. optax divides the int32
    count, which JAX does in float32 even with jax_enable_x64: a float64 run would get a
    float32-rounded learning rate. Same values in float32."""
    return lambda count: schedule(jnp.asarray(count, jnp.result_type(float)))


def weight_decay_mask(params):
    """True for conv / dense kernels only: biases and BatchNorm scales are not decayed (as the reference)."""
    return jax.tree_util.tree_map_with_path(
        lambda path, _: getattr(path[-1], "key", None) == "kernel", params
    )


def make(
    optim_config, total_steps: int, global_batch: int | None = None
) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """(optimizer, its lr schedule): `optim.name` (module docstring) over
    `learning_rate_schedule`, made once. One optimizer serves every trained net."""
    name = optim_config.name
    schedule = learning_rate_schedule(optim_config, total_steps, global_batch)
    if name == "sgd":
        tx = optax.chain(
            optax.add_decayed_weights(optim_config.weight_decay, mask=weight_decay_mask),
            optax.sgd(schedule, momentum=optim_config.momentum),
        )
    elif name == "adamw":
        tx = optax.adamw(
            schedule,
            b1=optim_config.momentum,
            weight_decay=optim_config.weight_decay,
            mask=weight_decay_mask,
        )
    else:
        raise ValueError(f"config.optim.name must be one of {OPTIMIZERS}, got {name!r}")
    factor = float(optim_config.classifier_lr)
    if factor <= 0:
        raise ValueError(f"config.optim.classifier_lr must be positive, got {factor}")
    if factor != 1.0:
        # Both updates are linear in the lr, so scaling the classifier's is its lr times `factor`.
        tx = optax.chain(tx, _scale_classifier(factor))
    return tx, schedule


def classifier_mask(params):
    """True for the parameters of the final classifier (the top-level "classifier" module)."""
    return jax.tree_util.tree_map_with_path(
        lambda path, _: getattr(path[0], "key", None) == "classifier", params
    )


def _scale_classifier(factor: float) -> optax.GradientTransformation:
    return optax.masked(optax.scale(factor), classifier_mask)
