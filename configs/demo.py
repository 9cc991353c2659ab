r"""CPS on the embedded `synthetic_streets` data set, 1/8 of the labels, sized for a CPU.

Trains two ResNet-18 DeepLabv3+ nets (narrow) at 96x192 and evaluates them:

  cps-train --config configs/demo.py --workdir runs/demo
  cps-eval  --config configs/demo.py --workdir runs/demo

Variants through the `:arg` suffix (comma separated key=value), e.g. `configs/demo.py:split=1/16`,
and any field through `--config.<field>=<value>`, e.g. `--config.total_steps=200`.
`configs/demo.py:runlocal` is the tiny variant that the tests train.

The demo trains with the recommended pseudo-label recipe (`RECIPES["recommended"]`, chosen by
measurement: README, "When unlabeled images help"); `:recipe=reference` gives the reference
code's plain argmax targets at a constant λ.

Args: split=<fraction> (1/8), recipe=recommended|reference, runlocal. Every other value is
configs/common.py's base config.
"""

from cps_jax import config_files

common = config_files.sibling(__file__, "common")

CONFIG_FILE = "configs/demo.py"  # names this file in errors
RECIPES = common.RECIPES  # declared once, in configs/common.py
# The `:arg` args and their defaults.
ARGS = {"split": "1/8", "recipe": "recommended", "runlocal": False}


def get_config(arg: str | None = None):
    return from_args(common.parse_arg(arg, ARGS, CONFIG_FILE), CONFIG_FILE)


def from_args(args: dict, source: str):
    """The demo's config for parsed `args` (the keys of ARGS; others are left to the caller)."""
    config = common.base_config()
    config.data.labeled_fraction = args["split"]
    common.apply_recipe(config, args["recipe"], source)
    if args["runlocal"]:
        # Tiny and fast: the tests train this one.
        config.data.height, config.data.width = 32, 64
        config.data.num_train, config.data.num_validation = 32, 8
        config.data.crop_size = (32, 32)
        config.data.worker_threads = 0
        config.model.width = 8
        config.model.aspp_channels = config.model.decoder_channels = 16
        config.model.low_level_channels = 8
        config.batch_size_labeled = config.batch_size_unlabeled = 2
        config.eval_batch_size = 3
        config.adapt.disc_width = 4
        config.total_steps = 4
        config.log_every = 1
        config.eval_every = config.checkpoint_every = 2
        config.num_visualize = 2
    return config
