"""The values of a config, checked before any data is read or program compiled.

Each check raises ConfigError('config.<field>: expected ..., got ...'), which the console scripts
print as one line (exit status 2). The sets of allowed values are those of the code that uses
them (the method registry, models.deeplab's BACKBONES and OUTPUT_STRIDES, datasets.NAMES).
"""

import math
import os

from cps_jax import datasets, methods
from cps_jax.data import partitions
from cps_jax.errors import ConfigError
from cps_jax.models import deeplab

# Fields that count something per step or per run: each a positive integer.
POSITIVE_INTS = (
    "batch_size_labeled",
    "batch_size_unlabeled",
    "eval_batch_size",
    "total_steps",
    "log_every",
    "eval_every",
    "checkpoint_every",
    "keep_checkpoints",
)


def _fail(field: str, expected: str, value) -> ConfigError:
    return ConfigError(f"config.{field}: expected {expected}, got {value!r}")


def _get(config, path: str):
    node = config
    for key in path.split("."):
        node = node[key]
    return node


def _positive_int(config, field: str) -> None:
    value = _get(config, field)
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise _fail(field, "a positive integer", value)


def _one_of(config, field: str, allowed) -> None:
    value = _get(config, field)
    if value not in allowed:
        raise _fail(field, f"one of {', '.join(repr(a) for a in allowed)}", value)


def _is_positive_number(value) -> bool:
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    return number and math.isfinite(value) and value > 0


def _positive_numbers(config, field: str, length: int | None = None) -> None:
    value = _get(config, field)
    numbers = tuple(value) if isinstance(value, (tuple, list)) else ()
    ok = numbers and all(_is_positive_number(v) for v in numbers)
    if not ok or (length is not None and len(numbers) != length):
        count = f"{length} positive numbers" if length else "one or more positive numbers"
        raise _fail(field, f"{count}, e.g. {(1.0,) * (length or 2)}", value)


def check_config(config) -> None:
    """The fields every command relies on (configs/common.py declares each of them)."""
    for field in POSITIVE_INTS:
        _positive_int(config, field)
    if config.eval_every % config.checkpoint_every:
        raise ConfigError(
            f"config.eval_every: expected a multiple of config.checkpoint_every="
            f"{config.checkpoint_every} (the best checkpoint carries its mIoU), got "
            f"{config.eval_every}"
        )
    _one_of(config, "method", methods.names())
    _one_of(config, "model.backbone", tuple(deeplab.BACKBONES))
    _one_of(config, "model.output_stride", deeplab.OUTPUT_STRIDES)
    _one_of(config, "data.name", datasets.NAMES)
    _positive_numbers(config, "data.scales")
    _positive_numbers(config, "data.crop_size", length=2)
    _positive_int(config, "cutmix.grid")
    crop = tuple(config.data.crop_size)
    if any(side % config.cutmix.grid for side in crop):
        raise _fail("cutmix.grid", f"a divisor of the crop size {crop}", config.cutmix.grid)
    if not config.data.labeled_list:
        try:
            partitions.parse_fraction(config.data.labeled_fraction)
        except ValueError:
            raise _fail(
                "data.labeled_fraction", "a fraction in (0, 1], e.g. '1/8' or 0.125",
                config.data.labeled_fraction,
            ) from None  # fmt: skip
    if not _is_positive_number(config.optim.lr):
        raise _fail("optim.lr", "a positive number", config.optim.lr)
    max_loss = config.max_loss
    if max_loss != 0 and not _is_positive_number(max_loss):
        raise _fail("max_loss", "0 (1e6 x the first loss) or a positive number", max_loss)


def check_self_training(config) -> None:
    """The fields cps-self-train reads beyond check_config's."""
    from cps_jax import self_training

    _one_of(config, "adapt.teacher", self_training.TEACHERS)
    _one_of(config, "adapt.student_init", self_training.STUDENT_INITS)
    _one_of(config, "adapt.cbst_quota", self_training.QUOTAS)


def check_workdir(workdir: str, *, write: bool = True, exist: bool = False) -> None:
    """--workdir: a directory (or a path where one can be made, unless `exist`) that this process
    can write (if `write`)."""
    path = os.path.abspath(workdir)
    if os.path.exists(path) and not os.path.isdir(path):
        raise ConfigError(f"--workdir {workdir}: expected a directory, but it is a file")
    if exist and not os.path.isdir(path):
        raise ConfigError(f"--workdir {workdir}: expected a run's directory, but there is none")
    existing = path
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise ConfigError(f"--workdir {workdir}: expected a directory, but {existing} is a file")
    if write and not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"--workdir {workdir}: expected a writable directory; {existing} is not")
