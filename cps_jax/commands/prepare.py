"""cps-prepare: prepares a data set (unless already there) and says what it holds.

cps-prepare --config configs/demo.py
cps-prepare cityscapes|voc_aug|gta5|synthia --manual_dir DOWNLOADS [--data_dir DATA]
cps-prepare image_folder --folder MY_DATA [--val_fraction 1/10] [--data_dir DATA]
"""

from absl import app, flags

from cps_jax import datasets, distributed
from cps_jax.commands import runner
from cps_jax.errors import ConfigError

FLAGS = flags.FLAGS
# The config.data fields a data-set name takes on the command line.
_DATA_FIELDS = ("data_dir", "manual_dir", "folder", "val_fraction")


def prepare(config) -> datasets.SegmentationData:
    """cps-prepare --config FILE: prepares the data set of `config.data`."""
    return prepare_data(config.data)


def prepare_dataset(name: str, **fields) -> datasets.SegmentationData:
    """cps-prepare NAME [--data_dir --manual_dir --folder --val_fraction]: `fields` are those of
    `config.data` (None: not given)."""
    if name not in datasets.NAMES:
        raise ConfigError(
            f"cps-prepare: unknown data set {name!r}; expected one of: {', '.join(datasets.NAMES)}"
        )
    return prepare_data(datasets.data_config(name, **fields))


def prepare_data(data_config) -> datasets.SegmentationData:
    """Prepares (unless already there) and opens one data set, and says what it holds. Problems
    with its input files raise `archives.DataError`, naming the file."""
    data = datasets.load_shared(data_config)
    unlabeled = "" if data.unlabeled is None else f", {len(data.unlabeled)} unlabeled-only"
    distributed.print_main(
        f"{data.name}: {len(data.train)} train, {len(data.validation)} validation{unlabeled} "
        f"examples in {datasets.resolve_data_dir(data_config)}"
    )
    return data


def define_flags():
    runner.define_config("The data set of this config file's `data` section, instead of a NAME.")
    flags.DEFINE_string(
        "data_dir", None, "With a NAME: where prepared data go (else $CPS_DATA_DIR, else ./data)."
    )
    flags.DEFINE_string(
        "manual_dir",
        None,
        "cityscapes, voc_aug, gta5, synthia: the folder holding the downloaded archives.",
    )
    flags.DEFINE_string(
        "folder", None, "image_folder: the data-set folder (images/, masks/, classes.json)."
    )
    flags.DEFINE_string(
        "val_fraction",
        None,
        "image_folder: share of images/ held out for validation when there is no val/ "
        f"(default {datasets.IMAGE_FOLDER_DEFAULTS['val_fraction']}).",
    )
    runner.define_multihost()


def _main(argv):
    names = argv[1:]
    fields = {f: getattr(FLAGS, f) for f in _DATA_FIELDS}
    if names:
        if len(names) > 1 or FLAGS.config is not None:
            raise app.UsageError(
                f"cps-prepare takes one data-set name ({', '.join(datasets.NAMES)}) or --config, "
                f"not both; got {' '.join(names)}" + (" and --config" if FLAGS.config else "")
            )
        runner.init_distributed()
        prepare_dataset(names[0], **fields)
        return
    runner.require("config")
    given = [f"--{f}" for f, v in fields.items() if v is not None]
    if given:
        raise app.UsageError(
            f"{', '.join(given)}: only with a data-set name; with --config use "
            "--config.data.<field>=... (e.g. --config.data.manual_dir=DIR)"
        )
    runner.init_distributed()
    prepare(FLAGS.config)


def main():
    runner.run_command(_main, __doc__, define_flags)


if __name__ == "__main__":
    main()
