"""Command-line entry points: cps-train, cps-eval, cps-prepare.

cps-train --config configs/demo.py --workdir runs/demo [--config.total_steps=200 ...]
cps-eval  --workdir runs/demo [--step latest|best|N|best,latest] [--config configs/demo.py ...]
cps-prepare --config configs/demo.py
cps-prepare cityscapes|voc_aug --manual_dir DOWNLOADS [--data_dir DATA]
cps-prepare image_folder --folder MY_DATA [--val_fraction 1/10] [--data_dir DATA]
cps-export --workdir runs/demo --step best --net left --output model.cpsj
cps-predict --model model.cpsj --input photos/ --output predictions/ [--mode sliding --flip]
cps-predict --workdir runs/demo --step best --input 'a/*.jpg' --output out

cps-eval, cps-export and cps-predict --workdir use the config the run was trained with
(W/config.json); a --config given instead must agree with it on the nets' fields.

Multi-host, one process per host: on Cloud TPU pod slices, SLURM and Open MPI nothing more is
needed; elsewhere add --coordinator_address HOST:PORT --num_processes N --process_id I on each host
(or set JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID).
"""

import atexit
import difflib
import errno
import os
import sys

import ml_collections
from absl import app, flags, logging
from ml_collections import config_flags

from cps_jax import cli, console, datasets, distributed, interrupts
from cps_jax.data.archives import DataError
from cps_jax.errors import RunError

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file(
    "config", None, "Path to a config file, e.g. configs/demo.py[:arg].", lock_config=True
)
flags.DEFINE_string("workdir", None, "Directory for checkpoints, logs and images.")
flags.DEFINE_string(
    "step",
    "latest",
    "cps-eval, cps-export, cps-predict: the checkpoint: latest, best, or a step number; cps-eval "
    "also takes several, separated by commas (best,latest).",
)
flags.DEFINE_string("split", "validation", "cps-eval: split to evaluate.")
flags.DEFINE_string(
    "data_dir", None, "cps-prepare NAME: where prepared data go (else $CPS_DATA_DIR, else ./data)."
)
flags.DEFINE_string(
    "manual_dir",
    None,
    "cps-prepare cityscapes|voc_aug: the folder holding the downloaded archives.",
)
flags.DEFINE_string(
    "folder", None, "cps-prepare image_folder: the data-set folder (images/, masks/, classes.json)."
)
flags.DEFINE_string(
    "val_fraction",
    None,
    "cps-prepare image_folder: share of images/ held out for validation when there is no val/ "
    f"(default {datasets.IMAGE_FOLDER_DEFAULTS['val_fraction']}).",
)
_PREPARE_FLAGS = ("data_dir", "manual_dir", "folder", "val_fraction")
flags.DEFINE_enum(
    "net", "left", ["left", "right", "both"], "cps-export, cps-predict: which net (both: ensemble)."
)
flags.DEFINE_string("output", None, "cps-export: the model file; cps-predict: the output folder.")
flags.DEFINE_string(
    "model", None, "cps-predict: a model file from cps-export (no --config needed)."
)
flags.DEFINE_string(
    "input", None, "cps-predict: an image file, a folder, or a glob ('a/**/*.png')."
)
flags.DEFINE_enum(
    "ids",
    "train",
    ["train", "dataset"],
    "cps-predict: label PNG values: train ids, or the data set's ids (Cityscapes labelIds).",
)
flags.DEFINE_list("outputs", ["labels", "color", "overlay"], "cps-predict: what to write.")
flags.DEFINE_float("alpha", 0.5, "cps-predict: opacity of the palette in overlays.")
flags.DEFINE_integer("batch_size", None, "cps-predict: images per batch (default eval_batch_size).")
flags.DEFINE_enum("mode", None, ["whole", "sliding"], "cps-predict: override config.eval.mode.")
flags.DEFINE_list("window", None, "cps-predict: override config.eval.window, e.g. 512,512.")
flags.DEFINE_list("stride", None, "cps-predict: override config.eval.stride, e.g. 342,342.")
flags.DEFINE_list("scales", None, "cps-predict: override config.eval.scales, e.g. 0.75,1,1.25.")
flags.DEFINE_bool("flip", None, "cps-predict: override config.eval.flip.")
flags.DEFINE_integer("pad_multiple", None, "cps-predict: override config.eval.pad_multiple.")
flags.DEFINE_string(
    "coordinator_address",
    None,
    "Multi-host: HOST:PORT of process 0 (else JAX_COORDINATOR_ADDRESS).",
)
flags.DEFINE_integer(
    "num_processes", None, "Multi-host: number of processes (else JAX_NUM_PROCESSES)."
)
flags.DEFINE_integer("process_id", None, "Multi-host: this process, 0..N-1 (else JAX_PROCESS_ID).")


def _require(*names):
    missing = [n for n in names if getattr(FLAGS, n) is None]
    if missing:
        raise app.UsageError("missing required flag(s): " + ", ".join(f"--{n}" for n in missing))


def _init_distributed():
    """Joins the other processes of a multi-host run (no-op for one process), before any JAX use."""
    try:
        distributed.initialize(FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id)
    except ValueError as error:
        raise cli.ConfigError(str(error)) from error


def _train(argv):
    del argv
    _require("config", "workdir")
    _init_distributed()
    cli.train(FLAGS.config, FLAGS.workdir)


def _eval(argv):
    del argv
    _require("workdir")
    _init_distributed()
    cli.evaluate(FLAGS.config, FLAGS.workdir, step=FLAGS.step, split=FLAGS.split)


def _export(argv):
    del argv
    _require("workdir", "output")
    cli.export_model(
        FLAGS.config, FLAGS.workdir, step=FLAGS.step, net=FLAGS.net, output=FLAGS.output
    )


def _inference_overrides() -> dict:
    """The InferenceOptions fields given on the command line."""

    def numbers(name, kind):
        values = getattr(FLAGS, name)
        if values is None:
            return None
        try:
            return tuple(kind(v) for v in values)
        except ValueError as error:
            raise cli.ConfigError(f"--{name}={','.join(values)}: {error}") from error

    given = {
        "mode": FLAGS.mode,
        "window": numbers("window", int),
        "stride": numbers("stride", int),
        "scales": numbers("scales", float),
        "flip": FLAGS.flip,
        "pad_multiple": FLAGS.pad_multiple,
    }
    return {k: v for k, v in given.items() if v is not None}


def _predict(argv):
    del argv
    _require("input", "output")
    model = cli.load_model(
        model_file=FLAGS.model,
        config=FLAGS.config,
        workdir=FLAGS.workdir,
        step=FLAGS.step,
        net=FLAGS.net,
    )
    failed = cli.predict(
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


def _prepare(argv):
    names = argv[1:]
    fields = {f: getattr(FLAGS, f) for f in _PREPARE_FLAGS}
    if names:
        if len(names) > 1 or FLAGS.config is not None:
            raise app.UsageError(
                f"cps-prepare takes one data-set name ({', '.join(datasets.NAMES)}) or --config, "
                f"not both; got {' '.join(names)}" + (" and --config" if FLAGS.config else "")
            )
        _init_distributed()
        cli.prepare_dataset(names[0], **fields)
        return
    _require("config")
    given = [f"--{f}" for f, v in fields.items() if v is not None]
    if given:
        raise app.UsageError(
            f"{', '.join(given)}: only with a data-set name; with --config use "
            "--config.data.<field>=... (e.g. --config.data.manual_dir=DIR)"
        )
    _init_distributed()
    cli.prepare(FLAGS.config)


def _parse_flags(argv):
    """absl's parser, with unknown config fields reported as a usage error instead of a traceback.

    The libraries' INFO logs (checkpointing, data sets, backends: a hundred lines per run) would
    bury the progress lines, so warnings and errors only unless --verbosity is given (0: INFO);
    and their warnings that no user can act on are dropped (cps_jax/console.py).
    """
    try:
        remaining = FLAGS(argv)
        if not FLAGS["verbosity"].present:
            logging.set_verbosity(logging.WARNING)
        console.install()
        return remaining
    except (AttributeError, KeyError) as error:
        _fail(_unknown_config_field(argv, error), USAGE_STATUS)
    except flags.Error as error:
        _fail(error, USAGE_STATUS)


def _config_file_of(argv):
    """The config that --config in `argv` names, without its overrides (None if it cannot load)."""
    for i, arg in enumerate(argv):
        if arg.startswith("--config="):
            spec = arg[len("--config=") :]
        elif arg == "--config" and i + 1 < len(argv):
            spec = argv[i + 1]
        else:
            continue
        try:
            return FLAGS["config"].parser.parse(spec)
        except Exception:  # the override error is the one to report, not this one
            return None
    return None


def _unknown_config_field(argv, error) -> str:
    """Which --config.<path> flag names a field the config does not have, and what it has."""
    config = _config_file_of(argv)
    for arg in argv:
        if not arg.startswith("--config."):
            continue
        flag = arg.split("=")[0]
        node, parent = config, "config"
        for key in flag[len("--config.") :].split("."):
            if not isinstance(node, ml_collections.ConfigDict):
                return f"{flag}: {parent} is {node!r}, not a section with fields"
            if key not in node:
                fields = sorted(node.keys())
                close = difflib.get_close_matches(key, fields, n=1)
                hint = f"its fields: {', '.join(fields)}"
                if close:
                    hint = f"did you mean {close[0]!r}?"
                return f"{flag}: {parent} has no field {key!r} ({hint})"
            node, parent = node[key], f"{parent}.{key}"
    message = " ".join(str(error).replace("\\n", "\n").replace("\\'", "").split())
    return f"unknown config field: {message}"


# Exit status of a wrong config or flag, as absl's usage errors; other errors a user can act on
# (an input file, a diverged run) exit 1. Each is one line, without a traceback.
USAGE_STATUS = 2
_DISK_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def _fail(message, status: int, prefix: str = "error: "):
    print(f"{prefix}{message}", file=sys.stderr, flush=True)
    # Out at once after the exit handlers, past the interpreter's teardown: reads that a failed
    # checkpoint restore abandoned may still end there, each printing a traceback.
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


def _run(main):
    try:
        app.run(main, flags_parser=_parse_flags)
    except cli.ConfigError as error:
        _fail(error, USAGE_STATUS)
    except interrupts.Stopped as stopped:  # on request: not an error
        _fail(stopped, stopped.exit_status, prefix="")
    except (DataError, RunError) as error:
        _fail(error, 1)
    except KeyboardInterrupt:  # before the trainer's loop, which says where it stopped
        _fail("interrupted", interrupts.SIGINT_STATUS, prefix="")
    except OSError as error:  # a full disk, for the logs or results (checkpoints say so above)
        if error.errno not in _DISK_FULL:
            raise
        _fail(f"{error.filename or 'writing'}: {error.strerror}", 1)


def train_main():
    _run(_train)


def eval_main():
    _run(_eval)


def prepare_main():
    _run(_prepare)


def export_main():
    _run(_export)


def predict_main():
    _run(_predict)


if __name__ == "__main__":
    train_main()
