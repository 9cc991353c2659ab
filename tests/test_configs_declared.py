"""Every config field the code reads is declared once, in configs/common.py's base config.

Each config file (with the `:arg` variants its docstring and the README show) declares exactly the
base config's fields; and what builds from a config (the checks, the model, the optimizer, the
train step, the data set's description) reads only declared fields: under `strict_reads` a read
of an undeclared field raises, `config.get("new_field", default)` included, which would otherwise
hide a default outside the base config.
"""

import contextlib
import glob
import os

import ml_collections
import pytest
from flax import nnx

import cli_runs
import fake_archives as fa
from cps_jax import augment, config_checks, config_files, datasets, export, inference, optim
from cps_jax import methods, train_step
from cps_jax.models import deeplab

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = os.path.join(ROOT, "configs")
common = config_files.load(os.path.join(CONFIGS, "common.py"))

# Per config file, the `:arg` variants that its docstring or the README show (None: no arg).
VARIANTS = {
    "demo.py": [None, "runlocal", "split=1/16", "recipe=reference"],
    "folder.py": ["path=my_data", "path=my_data,split=1/4", "path=my_data,runlocal"],
    "paper.py": [
        None,
        "dataset=voc,split=1/8,backbone=r50,cutmix=False",
        "dataset=cityscapes,split=1/16,backbone=r101,cutmix=True",
        "method=supervised",
    ],
    "voc.py": [None, "split=1/8,backbone=r101,cutmix=True", "split=1/8,backbone=r50,cutmix=False"],
    "cityscapes.py": [None, "split=1/8,backbone=r101,cutmix=True", "split=1/4,cutmix=False"],
    "ssl_table.py": [
        None,
        "method=cps,split=1/16,seed=0",
        "scenes=256,optim=adamw,domain=weather",
        "classes=benchmark,pretrained=source.cpsj",
        "method=supervised,split=1/1,domain=render,steps=1800",
        "regime=labels",
        "regime=labels,pretrained=source.cpsj,split=1/16,seed=0,"
        "method=cps_cutmix,recipe=recommended",
        "regime=labels,method=pct,image_labeled=rest",
        "regime=labels,method=cps,recipe=recommended,image_labeled=rest,class_mask=True",
        "regime=labels,method=cps_cutmix,recipe=recommended,cutmix_boxes=1",
    ],
    "pct_voc.py": [None, "labeled=92", "labeled=1464", "labeled=92,stage=2,folder=labels"],
    "adapt.py": [
        None,
        "method=minent,seed=0",
        "method=source_only",
        "method=supervised,target_labels=True",
        "method=dacs,source=translated",
        "method=source_only,student_init=teacher,cbst_start=0.0,cbst_step=0.0",
    ],
    "gta5_to_cityscapes.py": [None, "method=advent"],
    "cyclegan.py": [None, "runlocal", "target=weather,steps=100", "width=24,blocks=6,disc_width=32"],
    "synthia_to_cityscapes.py": [None, "method=advent"],
}
# And every row of the semi-supervised table, in the regime it runs in.
VARIANTS["ssl_table.py"] += [
    f"regime=labels,{args}"
    for _, args in config_files.load(os.path.join(CONFIGS, "ssl_table.py")).ROWS.values()
]
CASES = [(name, arg) for name, args in VARIANTS.items() for arg in args]


def config_of(name: str, arg: str | None) -> ml_collections.ConfigDict:
    return config_files.load(os.path.join(CONFIGS, name)).get_config(arg)


def fields(config, prefix: str = "") -> set:
    """The dotted names of every field of `config`, sections included."""
    out = set()
    for key, value in config.items():
        out.add(prefix + key)
        if isinstance(value, ml_collections.ConfigDict):
            out |= fields(value, f"{prefix}{key}.")
    return out


@contextlib.contextmanager
def strict_reads(config):
    """`config` locked (no field can be added) and every ConfigDict's `.get` of a field that is
    not declared raises KeyError, as attribute and item reads of one do."""
    plain_get = ml_collections.ConfigDict.get

    def declared_get(self, key, default=None):
        if key not in self:
            raise KeyError(f"{key!r} is read but not declared (configs/common.py)")
        return plain_get(self, key, default)

    config.lock()
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(ml_collections.ConfigDict, "get", declared_get)
            yield config
    finally:
        config.unlock()


def build_from(config, num_classes: int = 19) -> None:
    """What the commands build from a config before they read data or compile, cheaply: the
    checks, the model (shapes only), the optimizer and lr schedule, the train step function, the
    inference options and the data set's description."""
    config_checks.check_config(config)
    model = nnx.eval_shape(lambda: deeplab.build_model(config.model, num_classes, nnx.Rngs(0)))
    steps, batch = config.total_steps, config.batch_size_labeled
    tx, schedule = optim.make(config.optim, steps, batch)
    train_step.make_train_step(nnx.split(model)[0], config, tx, schedule)
    methods.get(config.method).initial_extra(config, num_classes)
    augment.check(config.strong)
    inference.options_from_config(config)
    datasets.resolve_data_dir(config.data)
    if config.data.name != "image_folder":  # a folder's classes are in the folder (test below)
        export.class_table(config.data)


def test_the_arg_parser_types_values_by_their_defaults():
    defaults = {"split": "1/8", "seed": 0, "lr": 0.1, "cutmix": False, "runlocal": False}
    args = common.parse_arg("split=1/16, seed=3,lr=1,cutmix=true,runlocal,", defaults, "x.py")
    assert args == {"split": "1/16", "seed": 3, "lr": 1.0, "cutmix": True, "runlocal": True}
    assert type(args["lr"]) is float and type(args["seed"]) is int
    assert common.parse_arg(None, defaults, "x.py") == defaults
    assert common.parse_arg("seed=1,seed=2", defaults, "x.py")["seed"] == 2  # the later one wins


@pytest.mark.parametrize(
    "name, arg, expected",
    [
        (
            "demo.py",
            "splt=1/16",
            "configs/demo.py:splt=1/16: unknown arg 'splt' (did you mean 'split'? expected one of "
            "split, recipe, runlocal)",
        ),
        ("ssl_table.py", "seed=first", "configs/ssl_table.py:seed=first: expected an integer"),
        ("paper.py", "cutmix=maybe", "configs/paper.py:cutmix=maybe: expected True or False"),
        ("folder.py", "split", "configs/folder.py:split: arg 'split' needs a value (split=...)"),
        ("voc.py", "backbone=r18", "configs/voc.py: arg backbone: expected r50 or r101"),
    ],
)
def test_a_bad_arg_is_one_line_naming_the_file_and_the_arg(name, arg, expected):
    with pytest.raises(ValueError) as raised:
        config_of(name, arg)
    assert str(raised.value).startswith(expected) and "\n" not in str(raised.value)


def test_every_config_file_has_its_variants_here():
    files = {os.path.basename(p) for p in glob.glob(os.path.join(CONFIGS, "[a-z]*.py"))}
    assert files - {"common.py"} == set(VARIANTS)


@pytest.mark.parametrize("name, arg", CASES)
def test_every_config_declares_the_base_fields_and_no_other(name, arg):
    config, base = config_of(name, arg), common.base_config()
    assert fields(config) - fields(base) == set(), "declare them in configs/common.py"
    assert fields(base) - fields(config) == set()


def test_the_model_fields_of_saved_runs_are_declared():
    assert set(deeplab.PREDATING_FIELDS) <= set(common.base_config().model)


@pytest.mark.parametrize("name, arg", CASES)
def test_what_builds_from_a_config_reads_only_declared_fields(name, arg):
    config = config_of(name, arg)
    with strict_reads(config):  # a read of an undeclared field raises KeyError here
        build_from(config)
    # Locked, the build could add no field: the config still has exactly the declared ones.
    assert fields(config) == fields(common.base_config())


def _reads_new_field(fn, section=lambda config: config):
    def wrapped(config, *args, **kwargs):
        section(config).get("new_field", 1)
        return fn(config, *args, **kwargs)

    return wrapped


@pytest.mark.parametrize(
    "module, name, section",
    [
        (config_checks, "check_config", lambda config: config),
        (config_checks, "check_config", lambda config: config.data),
        (deeplab, "build_model", lambda model_config: model_config),
    ],
)
def test_a_get_of_an_undeclared_field_fails_the_walk(monkeypatch, module, name, section):
    """As if someone wrote `config.get("new_field", 1)` into the checks or the model builder."""
    monkeypatch.setattr(module, name, _reads_new_field(getattr(module, name), section))
    config = config_of("demo.py", "runlocal")
    with strict_reads(config), pytest.raises(KeyError, match="'new_field' is read but not"):
        build_from(config)
    build_from(config)  # the same reads of a config without the lock pass unnoticed


def test_strict_reads_refuse_new_fields_and_undeclared_reads():
    config = config_of("demo.py", None)
    with strict_reads(config):
        with pytest.raises(AttributeError):
            config.optim.new_field  # noqa: B018
        with pytest.raises(AttributeError):
            config.optim.new_field = 1
        assert config.optim.get("lr", 0.0) == config.optim.lr
    config.optim.new_field = 1  # unlocked again afterwards


def test_an_image_folder_is_chosen_from_the_command_line(tmp_path):
    """--config.data.name=image_folder --config.data.folder=PATH on the demo config: the flags
    parse (the fields are declared) and reach the image-folder loader."""
    folder = tmp_path / "mine"
    fa.image_folder(str(folder), num_images=5)
    out = cli_runs.run(
        "prepare",
        "--config=configs/demo.py",
        "--config.data.name=image_folder",
        f"--config.data.folder={folder}",
        "--config.data.val_fraction=1/5",
        f"--config.data.data_dir={tmp_path / 'data'}",
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "image_folder: 4 train, 1 validation, 2 unlabeled-only examples" in out.stdout
    assert os.path.isdir(tmp_path / "data" / "cps_image_folder")


def test_the_image_folder_loader_reads_only_declared_fields(tmp_path):
    folder = tmp_path / "mine"
    fa.image_folder(str(folder), num_images=4)
    config = config_of("folder.py", f"path={folder},runlocal")
    config.data.data_dir = str(tmp_path / "data")
    with strict_reads(config):
        data = datasets.load(config.data)
        build_from(config, data.num_classes)
    assert data.class_names == ("background", "crack", "stain")
