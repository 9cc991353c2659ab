"""cps-pseudo-label: writes a run's pseudo labels for the images with image-level labels as an
image_folder, the training set of stage 2 (cps_jax/pseudo_folder.py).

cps-pseudo-label --workdir runs/pct --output runs/pct_labels [--step latest]
    [--scales 0.5,0.75,1,1.25,1.5 --flip]
cps-train --config configs/...:... --config.method=supervised --config.data.name=image_folder \
    --config.data.folder=runs/pct_labels --config.data.labeled_fraction=1 --workdir runs/stage2

It uses the run's config (WORKDIR/config.json) for the data set and its partition; the labels come
from the run's first net (PCT's hybrid net), by the run's `config.eval` unless the flags say
otherwise (the authors' stage 2: scales 0.5 to 1.5 and flip).
"""

import dataclasses

from absl import flags

from cps_jax import config_checks, datasets, inference, parallel, pseudo_folder, run_config
from cps_jax.commands import runner
from cps_jax.errors import ConfigError
from cps_jax.restore import restore_nets

FLAGS = flags.FLAGS


def pseudo_label(workdir: str, output: str, *, step="latest", scales=None, flip=None) -> dict:
    """cps-pseudo-label: the run's stage-2 folder in `output`; returns its summary."""
    config_checks.check_workdir(workdir, write=False, exist=True)
    config = run_config.resolve(None, workdir)
    runner.banner(workdir)
    try:
        options = inference.options_from_config(config)
        changes = {k: v for k, v in (("scales", scales), ("flip", flip)) if v is not None}
        options = dataclasses.replace(options, **changes)
    except ValueError as error:
        raise ConfigError(str(error).replace("config.eval.", "--")) from error
    data = datasets.load_shared(config.data)
    try:
        step, nets = restore_nets(config, workdir, data.num_classes, parallel.make_mesh(), step)
    except (FileNotFoundError, ValueError) as error:
        raise ConfigError(str(error)) from error
    first = next(iter(nets))
    print(f"Pseudo-labelling with the {first} net of step {step} into {output}", flush=True)
    summary = pseudo_folder.write(config, nets[first], data, output, options)
    line = f"Wrote {summary['pixel_labeled']} pixel-labeled + {summary['pseudo_labeled']} pseudo-labeled images"
    if "miou" in summary:
        line += (
            f"; pseudo labels against the hidden masks: pixel accuracy "
            f"{100 * summary['accuracy']:.2f}, mIoU {100 * summary['miou']:.2f}"
        )
    print(line, flush=True)
    return summary


def define_flags():
    runner.define_workdir("The run whose net labels the images (its checkpoints and config).")
    runner.define_step("The checkpoint: latest, best, or a step number.")
    flags.DEFINE_string("output", None, "The image_folder to write.")
    flags.DEFINE_list("scales", None, "Override config.eval.scales, e.g. 0.5,0.75,1,1.25,1.5.")
    flags.DEFINE_bool("flip", None, "Override config.eval.flip.")


def _main(argv):
    del argv
    runner.require("workdir", "output")
    try:
        scales = None if FLAGS.scales is None else tuple(float(s) for s in FLAGS.scales)
    except ValueError as error:
        raise ConfigError(f"--scales={','.join(FLAGS.scales)}: {error}") from error
    pseudo_label(FLAGS.workdir, FLAGS.output, step=FLAGS.step, scales=scales, flip=FLAGS.flip)


def main():
    runner.run_command(_main, __doc__, define_flags)


if __name__ == "__main__":
    main()
