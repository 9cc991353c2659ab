"""cps-cyclegan-train: trains a CycleGAN translator between two image sources (no labels used):
config.data.source (S) and config.data (T), writing previews at each eval (cps_jax/cyclegan/run.py).

cps-cyclegan-train --config configs/cyclegan.py --workdir runs/translator
cps-cyclegan-translate --workdir runs/translator --output runs/render_as_photo

A stopped run continues from its latest checkpoint.
"""

from absl import flags

from cps_jax import config_checks, run_config
from cps_jax.commands import runner
from cps_jax.cyclegan import run

FLAGS = flags.FLAGS


def train(config, workdir: str) -> dict:
    config_checks.check_workdir(workdir)
    runner.banner(workdir)
    run_config.save(config, workdir)
    return run.train(config, workdir)


def define_flags():
    runner.define_config()
    runner.define_workdir()


def _main(argv):
    del argv
    runner.require("config", "workdir")
    train(FLAGS.config, FLAGS.workdir)


def main():
    runner.run_command(_main, __doc__, define_flags)


if __name__ == "__main__":
    main()
