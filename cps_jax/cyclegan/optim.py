"""CycleGAN's optimizer: Adam (lr 2e-4, b1 0.5, b2 0.999), the learning rate constant until
`optim.decay_start` and then linearly down to 0 at `optim.total_steps`.

The original decays per epoch (100 constant, 100 decaying; epoch e's rate is
lr * (1 - max(0, e + 1 - 100) / 101), so its last epoch still has lr / 101); here the decay is
per step and ends at exactly 0. One optimizer serves the four nets, each with its own state
(Adam is per parameter: the same as the original's one Adam over G and F and one over D_S, D_T).
"""

import optax


def learning_rate_schedule(optim_config) -> optax.Schedule:
    total, start = int(optim_config.total_steps), int(optim_config.decay_start)
    if not 0 <= start <= total:
        raise ValueError(
            f"config.optim.decay_start must be in [0, total_steps={total}], got {start}"
        )
    lr = float(optim_config.lr)
    return optax.join_schedules(
        [optax.constant_schedule(lr), optax.linear_schedule(lr, 0.0, max(total - start, 1))],
        boundaries=[start],
    )


def make(optim_config) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """(Adam over the schedule, the schedule)."""
    schedule = learning_rate_schedule(optim_config)
    return optax.adam(schedule, b1=optim_config.b1, b2=optim_config.b2), schedule
