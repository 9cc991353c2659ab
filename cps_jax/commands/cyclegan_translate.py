"""cps-cyclegan-translate: repaints the labeled source of a translator's run (config.data.source)
in the target's style, into an image_folder with the masks and ids unchanged.

cps-cyclegan-translate --workdir runs/translator --output runs/render_as_photo
cps-train --config configs/adapt.py:method=source_only,source=runs/render_as_photo --workdir runs/t
"""

from absl import flags

from cps_jax import config_checks, datasets, run_config
from cps_jax.commands import runner
from cps_jax.cyclegan import run
from cps_jax.errors import ConfigError

FLAGS = flags.FLAGS


def translate(workdir: str, output: str) -> dict:
    config_checks.check_workdir(workdir, write=False, exist=True)
    config = run_config.resolve(None, workdir)
    runner.banner(workdir)
    try:
        params = run.restore_generator(config, workdir, "G")
    except FileNotFoundError as error:
        raise ConfigError(str(error)) from error
    data = datasets.load_shared(config.data.source)
    summary = run.translate_folder(params, data, output)
    print(f"Wrote {summary['images']} translated images with their masks to {output}", flush=True)
    return summary


def define_flags():
    runner.define_workdir("The translator's run (its checkpoints and config).")
    flags.DEFINE_string("output", None, "The image_folder to write.")


def _main(argv):
    del argv
    runner.require("workdir", "output")
    translate(FLAGS.workdir, FLAGS.output)


def main():
    runner.run_command(_main, __doc__, define_flags)


if __name__ == "__main__":
    main()
