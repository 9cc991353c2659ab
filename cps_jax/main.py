"""Command-line entry points: cps-train, cps-eval, cps-prepare.

cps-train --config configs/demo.py --workdir runs/demo [--config.total_steps=200 ...]
cps-eval  --config configs/demo.py --workdir runs/demo [--step latest|best|N]
cps-prepare --config configs/demo.py
"""

import sys

from absl import app, flags
from ml_collections import config_flags

from cps_jax import cli

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file(
    "config", None, "Path to a config file, e.g. configs/demo.py[:arg].", lock_config=True
)
flags.DEFINE_string("workdir", None, "Directory for checkpoints, logs and images.")
flags.DEFINE_string("step", "latest", "cps-eval: checkpoint to evaluate: latest, best, or a step.")
flags.DEFINE_string("split", "validation", "cps-eval: split to evaluate.")


def _require(*names):
    missing = [n for n in names if getattr(FLAGS, n) is None]
    if missing:
        raise app.UsageError("missing required flag(s): " + ", ".join(f"--{n}" for n in missing))


def _train(argv):
    del argv
    _require("config", "workdir")
    cli.train(FLAGS.config, FLAGS.workdir)


def _eval(argv):
    del argv
    _require("config", "workdir")
    cli.evaluate(FLAGS.config, FLAGS.workdir, step=FLAGS.step, split=FLAGS.split)


def _prepare(argv):
    del argv
    _require("config")
    cli.prepare(FLAGS.config)


def _parse_flags(argv):
    """absl's parser, with unknown config fields reported as a usage error instead of a traceback."""
    try:
        return FLAGS(argv)
    except (AttributeError, KeyError) as error:
        field = next((a.split("=")[0] for a in argv if a.startswith("--config.")), "--config.*")
        message = " ".join(str(error).replace("\\n", "\n").replace("\\'", "").split())
        sys.exit(f"error: unknown config field in {field}: {message}")
    except flags.Error as error:
        sys.exit(f"error: {error}")


def _run(main):
    try:
        app.run(main, flags_parser=_parse_flags)
    except cli.ConfigError as error:  # bad user input: the message, not a traceback
        sys.exit(f"error: {error}")


def train_main():
    _run(_train)


def eval_main():
    _run(_eval)


def prepare_main():
    _run(_prepare)


if __name__ == "__main__":
    train_main()
