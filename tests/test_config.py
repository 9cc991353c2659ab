"""Configs build, overrides apply (derived values follow), and bad overrides fail clearly."""

import glob
import importlib.util
import os
import subprocess
import sys

import ml_collections
import pytest

from configs import demo
from cps_jax import config_files

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The config files: every module of configs/ but common.py, which they share.
CONFIG_FILES = sorted(
    p
    for p in glob.glob(os.path.join(ROOT, "configs", "[a-z]*.py"))
    if os.path.basename(p) != "common.py"
)


@pytest.mark.parametrize("path", CONFIG_FILES)
def test_every_config_builds(path):
    spec = importlib.util.spec_from_file_location("config_under_test", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config()
    assert isinstance(config, ml_collections.ConfigDict) and config.total_steps > 0


def test_arg_suffix_variants():
    assert demo.get_config("split=1/16").data.labeled_fraction == "1/16"
    assert demo.get_config("runlocal").model.width == 8


def _flags(*args):
    """Parses command-line flags exactly as the console scripts do, and prints the resolved config."""
    code = (
        "import sys; from absl import flags; from cps_jax.commands import runner, train; "
        "train.define_flags(); runner.parse_flags(sys.argv); "
        "print(flags.FLAGS.config.optim.lr, flags.FLAGS.config.model.width, "
        "flags.FLAGS.config.data.crop_size)"
    )
    return subprocess.run(
        [sys.executable, "-c", code, "prog", *args], capture_output=True, text=True, cwd=ROOT
    )


def test_overrides_reach_the_config():
    out = _flags(
        "--config=configs/demo.py",
        "--config.optim.lr=0.5",
        "--config.model.width=4",
        "--config.data.crop_size=(8,16)",
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["0.5", "4", "(8,", "16)"]


def test_unknown_field_is_named_in_the_error():
    out = _flags("--config=configs/demo.py", "--config.optim.lrr=0.5")
    assert out.returncode != 0 and "lrr" in out.stderr


@pytest.mark.parametrize(
    "flags, expected",
    [
        (
            ["--config.total_steps=20", "--config.data.foldr=x"],
            "error: --config.data.foldr: config.data has no field 'foldr' (did you mean 'folder'",
        ),
        (["--config.optim.lr=1", "--config.zz=1"], "error: --config.zz: config has no field 'zz'"),
        (
            ["--config.model.width.x=1"],
            "error: --config.model.width.x: config.model.width is 16, not a section with fields",
        ),
    ],
)
@pytest.mark.slow
def test_the_flag_naming_an_unknown_field_is_the_one_blamed(flags, expected):
    out = _flags("--config=configs/demo.py", *flags)
    assert out.returncode == 2 and out.stderr.startswith(expected), out.stderr


def test_a_users_folder_is_declared_in_the_config_and_set_by_flags():
    out = _flags(
        "--config=configs/demo.py",
        "--config.data.name=image_folder",
        "--config.data.folder=my_data",
        "--config.data.val_fraction=1/5",
        "--config.data.val_seed=3",
    )
    assert out.returncode == 0, out.stderr
    config = demo.get_config()
    assert (config.data.folder, config.data.val_fraction, config.data.val_seed) == ("", "1/10", 0)
    module = config_files.load(os.path.join(ROOT, "configs", "folder.py"))
    mine = module.get_config("path=my_data,runlocal")
    assert (mine.data.name, mine.data.folder, mine.model.width) == ("image_folder", "my_data", 8)


def test_wrong_type_is_named_in_the_error():
    out = _flags("--config=configs/demo.py", "--config.model.width=wide")
    assert out.returncode != 0 and "width" in out.stderr and "wide" in out.stderr


def test_ssl_table_regime_args_set_scenes_optimizer_domain_and_backbone():
    module = config_files.load(os.path.join(ROOT, "configs", "ssl_table.py"))
    default = module.get_config("method=cps,split=1/16")
    assert (default.data.num_train, default.optim.name, default.optim.lr) == (1000, "sgd", 0.1)
    config = module.get_config("method=cps,split=1/16,scenes=256,optim=adamw")
    assert (config.data.num_train, config.optim.name) == (256, "adamw")
    assert (config.optim.lr, config.optim.weight_decay) == (0.002, 0.01)
    with pytest.raises(ValueError, match="optim must be 'sgd' or 'adamw', got 'adam'"):
        module.get_config("optim=adam")
    assert default.data.domain == "photo"
    assert module.get_config("domain=weather").data.domain == "weather"
    assert default.model.pretrained == ""
    assert module.get_config("pretrained=runs/a.cpsj").model.pretrained == "runs/a.cpsj"
    with pytest.raises(ValueError, match="domain must be one of .*, got 'snow'"):
        module.get_config("domain=snow")
    # CutMix's boxes: the reference's three unless the arg says otherwise (the one-box row).
    assert default.cutmix.num_boxes == 3
    one_box = module.get_config(module.ROWS["cps_cutmix_recommended_one_box"][1])
    assert (one_box.method, one_box.cutmix.num_boxes) == ("cps_cutmix", 1)
    with pytest.raises(ValueError, match="cutmix_boxes=two: expected an integer"):
        module.get_config("cutmix_boxes=two")
    # The unmixed images' term: off (the reference) unless the row asks for it.
    assert default.cutmix.unmixed_term is False
    unmixed = module.get_config(module.ROWS["cps_cutmix_recommended_unmixed"][1])
    assert (unmixed.method, unmixed.cutmix.unmixed_term) == ("cps_cutmix", True)
    assert default.cutmix.grid == 1
    assert module.get_config(module.ROWS["cps_cutmix_recommended_grid"][1]).cutmix.grid == 16
    # λ: the method's unless cps_weight says otherwise.
    assert default.loss.cps_weight == 1.5
    assert module.get_config("method=cps_cutmix").loss.cps_weight == 1.0
    assert module.get_config("method=cps_cutmix,cps_weight=1.5").loss.cps_weight == 1.5


@pytest.mark.parametrize("name", ["paper.py", "voc.py", "cityscapes.py"])
def test_paper_configs_follow_the_reference_code(name):
    module = config_files.load(os.path.join(ROOT, "configs", name))
    for cutmix in (True, False):
        config = module.get_config(f"split=1/8,cutmix={cutmix}")
        assert config.model.bn_running_var == "unbiased"  # PyTorch's running variance
        assert config.model.classifier_bias_init == "torch"  # PyTorch's default Conv2d bias
        # The code applies CPS to the mixed unlabeled images only; without CutMix to both.
        assert config.loss.cps_on == ("unlabeled" if cutmix else "both")
        assert config.method == ("cps_cutmix" if cutmix else "cps")
        # Plain argmax pseudo labels at a constant weight (configs/demo.py's reference recipe).
        for path, value in getattr(demo, "RECIPES", {}).get("reference", {}).items():
            section, field = path.split(".")
            assert config[section][field] == value, path
    # The demo (and the configs built on it) keeps flax's defaults.
    assert demo.get_config().model.bn_running_var == "biased"
    assert demo.get_config().model.classifier_bias_init == "zeros"


def test_ssl_table_labels_regime_recipes_and_source():
    module = config_files.load(os.path.join(ROOT, "configs", "ssl_table.py"))
    config = module.get_config("regime=labels,method=cps,recipe=recommended")
    assert (config.data.num_train, config.optim.name, config.total_steps) == (256, "adamw", 900)
    assert config.data.classes == module.BENCHMARK_CLASSES
    for path, value in demo.RECIPES["recommended"].items():
        section, field = path.split(".")
        assert config[section][field] == value
    reference = module.get_config("regime=labels,method=cps")
    assert reference.pseudo.balance == "none" and reference.loss.warmup_fraction == 0.0
    # An arg given beside the regime wins over the regime's.
    assert module.get_config("regime=labels,steps=100").total_steps == 100
    source = module.source_config()
    assert (source.data.domain, source.data.dataset_seed, source.method) == (
        "render",
        1,
        "supervised",
    )
    assert source.data.labeled_fraction == "1/1" and source.data.classes == ()
    with pytest.raises(ValueError, match="regime must be 'labels'"):
        module.get_config("regime=easy")
    with pytest.raises(ValueError, match="recipe must be one of"):
        module.get_config("recipe=best")
    # The demo trains with the recommended recipe, and says so.
    assert demo.get_config().pseudo.balance == demo.RECIPES["recommended"]["pseudo.balance"]
    assert "recommended" in demo.__doc__


CONFIG_VARIANTS = [
    ("demo.py", None),
    ("ssl_table.py", "method=cutmix_seg,split=1/4,seed=1,scenes=256,optim=adamw,domain=weather"),
    ("ssl_table.py", "regime=labels,method=cps_cutmix,recipe=recommended"),
    ("paper.py", "dataset=voc,split=1/2,backbone=r101,cutmix=False"),
    ("voc.py", "split=1/16,backbone=r50,cutmix=True"),
    ("cityscapes.py", "split=1/8,backbone=r101,cutmix=False"),
    ("cityscapes.py", "split=1/4,cutmix=True"),
    ("folder.py", "path=my_data,split=1/4"),
    ("pct_voc.py", "labeled=183"),
    ("pct_voc.py", "labeled=92,stage=2,folder=labels"),
    ("adapt.py", "method=dacs"),
    ("adapt.py", "method=advent,target=photo"),
    ("gta5_to_cityscapes.py", "method=adaptseg"),
    ("synthia_to_cityscapes.py", "method=minent"),
    ("cyclegan.py", "runlocal"),
]


def test_every_config_file_has_a_variant_below():
    names = {os.path.basename(p) for p in CONFIG_FILES}
    assert names == {name for name, _ in CONFIG_VARIANTS}


@pytest.mark.slow
@pytest.mark.parametrize("name,arg", CONFIG_VARIANTS)
def test_every_config_runs_two_training_steps_with_a_tiny_model(name, arg):
    import jax
    import numpy as np

    from cps_jax import methods, optim
    from cps_jax.models.functional import net_graphdef
    from cps_jax.state import create_train_state
    from cps_jax.train_step import make_train_step

    path = os.path.join(ROOT, "configs", name)
    spec = importlib.util.spec_from_file_location("config_under_test", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config(arg)
    # Everything the config says (method, losses, optimizer) except the network's size.
    tiny = demo.get_config("runlocal").model
    config.model.update(
        {
            k: tiny[k]
            for k in (
                "backbone",
                "width",
                "aspp_channels",
                "low_level_channels",
                "decoder_channels",
            )
        }
    )
    num_classes, n, size = 19, 2, 32
    tx, schedule = optim.make(config.optim, config.total_steps, n)
    extra = methods.get(config.method).initial_extra(config, num_classes)
    state = create_train_state(
        config.model, num_classes, tx, jax.random.key_data(jax.random.key(0)), config.method, extra
    )
    step = jax.jit(
        make_train_step(net_graphdef(config.model, num_classes), config, tx, schedule)
    )
    rng = np.random.default_rng(0)
    batch = {
        "image_l": rng.normal(size=(n, size, size, 3)).astype(np.float32),
        "mask_l": rng.integers(0, num_classes, (n, size, size)).astype(np.int32),
        "image_u": rng.normal(size=(n, size, size, 3)).astype(np.float32),
        "classes_l": (rng.random((n, num_classes)) < 0.5).astype(np.uint8),
    }
    if "u1" in methods.get(config.method).streams:
        batch["image_u1"] = rng.normal(size=(n, size, size, 3)).astype(np.float32)
    if "w" in methods.get(config.method).streams:
        batch["image_w"] = rng.normal(size=(n, size, size, 3)).astype(np.float32)
        batch["mask_w"] = batch["mask_l"]
        batch["pixel_w"] = np.array([True, False])
        for s in ("l", "w"):
            batch[f"classes_{s}"] = (rng.random((n, num_classes)) < 0.5).astype(np.uint8)
    for i in range(2):
        state, metrics = step(state, batch, jax.random.key_data(jax.random.key(i)))
    assert int(state.step) == 2 and np.isfinite(float(metrics["loss"]))


@pytest.mark.parametrize("verbosity, info_shown", [(None, False), ("0", True)])
def test_library_info_logs_only_with_verbosity(verbosity, info_shown):
    """Progress lines must not drown in the libraries' INFO logs; --verbosity=0 brings them back."""
    code = (
        "from absl import logging; from cps_jax.commands import runner; "
        "runner.run(lambda argv: logging.info('an info line') or logging.warning('a warning line'))"
    )
    args = [] if verbosity is None else [f"--verbosity={verbosity}"]
    out = subprocess.run(
        [sys.executable, "-c", code, "prog", *args], capture_output=True, text=True, cwd=ROOT
    )
    assert out.returncode == 0, out.stderr
    assert "a warning line" in out.stderr
    assert ("an info line" in out.stderr) == info_shown, out.stderr


@pytest.mark.parametrize(
    "field, value, expected",
    [
        ("batch_size_labeled", 0, "config.batch_size_labeled: expected a positive integer, got 0"),
        ("batch_size_unlabeled", -2, "config.batch_size_unlabeled: expected a positive integer"),
        ("eval_batch_size", 0, "config.eval_batch_size: expected a positive integer, got 0"),
        ("checkpoint_every", 0, "config.checkpoint_every: expected a positive integer, got 0"),
        ("log_every", 0, "config.log_every: expected a positive integer, got 0"),
        ("total_steps", 0, "config.total_steps: expected a positive integer, got 0"),
        ("total_steps", -5, "config.total_steps: expected a positive integer, got -5"),
        ("eval_every", 3, "config.eval_every: expected a multiple of config.checkpoint_every=2"),
        ("data.scales", (), "config.data.scales: expected one or more positive numbers"),
        ("data.crop_size", (32,), "config.data.crop_size: expected 2 positive numbers"),
        ("method", "cpss", "config.method: expected one of 'cps', 'cps_cutmix'"),
        ("model.backbone", "resnet19", "config.model.backbone: expected one of 'resnet18'"),
        ("model.output_stride", 7, "config.model.output_stride: expected one of 8, 16, 32, got 7"),
        ("data.labeled_fraction", "0", "config.data.labeled_fraction: expected a fraction in"),
        ("data.labeled_fraction", "2", "config.data.labeled_fraction: expected a fraction in"),
        ("data.name", "imagenet", "config.data.name: expected one of 'synthetic_streets'"),
        ("optim.lr", -0.1, "config.optim.lr: expected a positive number, got -0.1"),
        ("max_loss", -1.0, "config.max_loss: expected 0 (1e6 x the first loss) or a positive"),
        ("cutmix.grid", 0, "config.cutmix.grid: expected a positive integer, got 0"),
        ("cutmix.grid", True, "config.cutmix.grid: expected a positive integer, got True"),
        ("cutmix.grid", 7, "config.cutmix.grid: expected a divisor of the crop size"),
    ],
)
def test_a_wrong_value_is_one_line_naming_the_field_before_any_work(field, value, expected):
    from cps_jax import config_checks
    from cps_jax.errors import ConfigError

    config = demo.get_config("runlocal")
    section, _, name = field.rpartition(".")
    (config[section] if section else config)[name] = value
    with pytest.raises(ConfigError) as raised:
        config_checks.check_config(config)
    assert str(raised.value).startswith(expected), str(raised.value)


def test_a_workdir_that_is_a_file_or_read_only_is_refused(tmp_path):
    from cps_jax import config_checks
    from cps_jax.errors import ConfigError

    (tmp_path / "file").write_text("")
    with pytest.raises(ConfigError, match="file: expected a directory, but it is a file"):
        config_checks.check_workdir(str(tmp_path / "file"))
    with pytest.raises(ConfigError, match="expected a directory, but .*file is a file"):
        config_checks.check_workdir(str(tmp_path / "file" / "run"))
    with pytest.raises(ConfigError, match="expected a run's directory, but there is none"):
        config_checks.check_workdir(str(tmp_path / "none"), exist=True)
    read_only = tmp_path / "ro"
    read_only.mkdir()
    read_only.chmod(0o500)
    try:
        if os.access(read_only, os.W_OK):  # root writes anywhere: nothing to check
            pytest.skip("this user can write to a read-only directory")
        with pytest.raises(ConfigError, match="expected a writable directory"):
            config_checks.check_workdir(str(read_only / "run"))
    finally:
        read_only.chmod(0o700)


@pytest.mark.slow
def test_cps_train_with_a_wrong_value_exits_2_with_one_line(tmp_path):
    import cli_runs

    out = cli_runs.train(str(tmp_path / "run"), "--config.batch_size_labeled=0")
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        "error: config.batch_size_labeled: expected a positive integer, got 0"
    ]
    assert not os.path.exists(tmp_path / "run")  # no lock, no data, nothing compiled


def test_the_libraries_noise_is_dropped_and_the_users_messages_kept():
    """Warnings no user can act on (console.NOISE) are dropped; everything else shows."""
    code = (
        "from absl import logging; from cps_jax import console\n"
        "from cps_jax.commands import runner\n"
        "def run(argv):\n"
        "    for noise in console.NOISE:\n"
        "        logging.warning(noise + ' (details)')\n"
        "    logging.warning('the user: OpenCV is missing from my own list')\n"
        "    logging.error('a real error of the checkpoint library')\n"
        "runner.run(run)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, "prog"], capture_output=True, text=True, cwd=ROOT
    )
    assert out.returncode == 0, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 2, out.stderr
    assert "the user: OpenCV is missing" in lines[0] and "a real error" in lines[1]


def test_a_full_disk_is_one_line_naming_the_file():
    code = (
        "import errno; from cps_jax.commands import runner\n"
        "def run(argv):\n"
        "    raise OSError(errno.ENOSPC, 'No space left on device', 'runs/a/metrics.jsonl')\n"
        "runner.run(run)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, "prog"], capture_output=True, text=True, cwd=ROOT
    )
    assert out.returncode == 1
    assert out.stderr.strip() == "error: runs/a/metrics.jsonl: No space left on device"
