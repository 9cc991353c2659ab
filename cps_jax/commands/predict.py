"""cps-predict: writes the predicted labels (PNG), colours and overlays of images.

cps-predict --model model.cpsj --input photos/ --output predictions/ [--mode sliding --flip]
cps-predict --workdir runs/demo --step best --input 'a/*.jpg' --output out

The model is a file from cps-export, or a run's checkpoint; the latter with the config the run was
trained with (WORKDIR/config.json), or a --config that agrees with it on the nets' fields.
"""

import dataclasses
import sys

from absl import flags

from cps_jax import config_checks, export, inference, parallel, run_config
from cps_jax import predict as predict_lib
from cps_jax.commands import runner
from cps_jax.errors import ConfigError
from cps_jax.restore import restore_nets

FLAGS = flags.FLAGS


def load_model(*, model_file=None, config=None, workdir=None, step="latest", net="left"):
    """The model `cps-predict` runs: a model file, or a checkpoint in a workdir with its config
    (the run's own unless `config` is given)."""
    try:
        if model_file:
            model = export.load(model_file)
            return dataclasses.replace(model, nets=export.select_nets(model.nets, net, model_file))
        if workdir is None:
            raise ValueError("give --model FILE, or --workdir (and optionally --config)")
        config_checks.check_workdir(workdir, write=False, exist=True)
        config = run_config.resolve(config, workdir)
        class_names, palette, label_ids = export.class_table(config.data)
        step, nets = restore_nets(config, workdir, len(class_names), parallel.make_mesh(), step)
        nets = export.select_nets(nets, net, f"the checkpoint at step {step}")
        return export.Model(config, nets, class_names, palette, label_ids, step)
    except (FileNotFoundError, ValueError) as error:
        raise ConfigError(str(error)) from error


def predict(
    model,
    input_spec: str,
    output_dir: str,
    *,
    overrides: dict | None = None,
    batch_size: int | None = None,
    ids: str = "train",
    outputs=predict_lib.OUTPUTS,
    alpha: float = 0.5,
    progress: bool = True,
) -> list:
    """cps-predict: writes the predictions of every image of `input_spec`; returns the files that
    could not be read, as (path, reason). `overrides`: InferenceOptions fields that replace the
    model config's `eval` section (mode, window, stride, scales, flip, pad_multiple)."""
    mesh, overrides = parallel.make_mesh(), overrides or {}
    try:
        fields = {**dataclasses.asdict(inference.options_from_config(model.config)), **overrides}
        if fields["mode"] == "sliding" and not fields["window"]:
            fields["window"] = tuple(model.config.data.crop_size)  # as config.eval.window=()
        try:
            options = inference.InferenceOptions(**fields)
        except ValueError as error:  # name the flag the user typed, not the config field
            raise ValueError(str(error).replace("config.eval.", "--")) from error
        unknown = set(outputs) - set(predict_lib.OUTPUTS)
        if unknown:
            raise ValueError(
                f"--outputs: unknown {sorted(unknown)}; expected some of {predict_lib.OUTPUTS}"
            )
        if ids not in ("train", "dataset"):
            raise ValueError(f"--ids: expected train or dataset, got {ids!r}")
        if ids == "dataset" and model.label_ids is None:
            raise ValueError(
                f"--ids=dataset: the model's data set ({model.config.data.name}) has no label "
                "ids other than its train ids"
            )
        files = predict_lib.find_images(input_spec)
    except ValueError as error:
        raise ConfigError(str(error)) from error
    devices = parallel.data_parallel_size(mesh)
    batch_size = batch_size or model.config.eval_batch_size
    batch_size = -(-batch_size // devices) * devices  # whole batches on every device
    predict_fn = predict_lib.make_predict_fn(model.graphdef(), model.nets, options, mesh)
    failed = predict_lib.predict_files(
        files,
        output_dir,
        predict_fn,
        options=options,
        batch_size=batch_size,
        palette=model.palette,
        label_ids=model.label_ids if ids == "dataset" else None,
        outputs=outputs,
        alpha=alpha,
        progress=progress,
    )
    print(f"Wrote {len(files) - len(failed)} of {len(files)} image(s) to {output_dir}", flush=True)
    for path, reason in failed:
        print(f"failed: {path}: {reason}", file=sys.stderr, flush=True)
    return failed


def define_flags():
    flags.DEFINE_string("input", None, "An image file, a folder, or a glob ('a/**/*.png').")
    flags.DEFINE_string("output", None, "The folder the predictions go to.")
    flags.DEFINE_string("model", None, "A model file from cps-export (no --config needed).")
    runner.define_workdir("Instead of --model: the run whose checkpoint to use.")
    runner.define_step("With --workdir, the checkpoint: latest, best, or a step number.")
    runner.define_config("With --workdir, a config file instead of the run's own.")
    runner.define_net()
    flags.DEFINE_enum(
        "ids",
        "train",
        ["train", "dataset"],
        "Label PNG values: train ids, or the data set's ids (Cityscapes labelIds).",
    )
    flags.DEFINE_list("outputs", ["labels", "color", "overlay"], "What to write.")
    flags.DEFINE_float("alpha", 0.5, "Opacity of the palette in overlays.")
    flags.DEFINE_integer("batch_size", None, "Images per batch (default eval_batch_size).")
    # Each None: the model config's own eval setting.
    flags.DEFINE_enum("mode", None, ["whole", "sliding"], "Override config.eval.mode.")
    flags.DEFINE_list("window", None, "Override config.eval.window, e.g. 512,512.")
    flags.DEFINE_list("stride", None, "Override config.eval.stride, e.g. 342,342.")
    flags.DEFINE_list("scales", None, "Override config.eval.scales, e.g. 0.75,1,1.25.")
    flags.DEFINE_bool("flip", None, "Override config.eval.flip.")
    flags.DEFINE_integer("pad_multiple", None, "Override config.eval.pad_multiple.")


def _inference_overrides() -> dict:
    """The InferenceOptions fields given on the command line."""

    def numbers(name, kind):
        values = getattr(FLAGS, name)
        if values is None:
            return None
        try:
            return tuple(kind(v) for v in values)
        except ValueError as error:
            raise ConfigError(f"--{name}={','.join(values)}: {error}") from error

    given = {
        "mode": FLAGS.mode,
        "window": numbers("window", int),
        "stride": numbers("stride", int),
        "scales": numbers("scales", float),
        "flip": FLAGS.flip,
        "pad_multiple": FLAGS.pad_multiple,
    }
    return {k: v for k, v in given.items() if v is not None}


def _main(argv):
    del argv
    runner.require("input", "output")
    model = load_model(
        model_file=FLAGS.model,
        config=FLAGS.config,
        workdir=FLAGS.workdir,
        step=FLAGS.step,
        net=FLAGS.net,
    )
    failed = predict(
        model,
        FLAGS.input,
        FLAGS.output,
        overrides=_inference_overrides(),
        batch_size=FLAGS.batch_size,
        ids=FLAGS.ids,
        outputs=tuple(FLAGS.outputs),
        alpha=FLAGS.alpha,
    )
    if failed:
        sys.exit(f"error: {len(failed)} file(s) could not be read (listed above)")


def main():
    runner.run_command(_main, __doc__, define_flags)


if __name__ == "__main__":
    main()
