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


@pytest.mark.parametrize("path", sorted(glob.glob(os.path.join(ROOT, "configs", "[a-z]*.py"))))
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
        "import sys; from absl import flags; from cps_jax import main; "
        "flags.FLAGS(sys.argv); print(flags.FLAGS.config.optim.lr, flags.FLAGS.config.model.width, "
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
]


def test_every_config_file_has_a_variant_below():
    names = {os.path.basename(p) for p in glob.glob(os.path.join(ROOT, "configs", "[a-z]*.py"))}
    assert names == {name for name, _ in CONFIG_VARIANTS}


@pytest.mark.parametrize("name,arg", CONFIG_VARIANTS)
def test_every_config_runs_two_training_steps_with_a_tiny_model(name, arg):
    import jax
    import numpy as np

    from cps_jax.optim import learning_rate_schedule, make_optimizer
    from cps_jax.state import create_train_state, net_graphdef
    from cps_jax.train_step import make_train_step, uses_two_unlabeled

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
    tx = make_optimizer(config.optim, config.total_steps, n)
    state = create_train_state(
        config.model, num_classes, tx, jax.random.key_data(jax.random.key(0)), config.method
    )
    step = jax.jit(
        make_train_step(
            net_graphdef(config.model, num_classes),
            config,
            tx,
            learning_rate_schedule(config.optim, config.total_steps, n),
        )
    )
    rng = np.random.default_rng(0)
    batch = {
        "image_l": rng.normal(size=(n, size, size, 3)).astype(np.float32),
        "mask_l": rng.integers(0, num_classes, (n, size, size)).astype(np.int32),
        "image_u": rng.normal(size=(n, size, size, 3)).astype(np.float32),
    }
    if uses_two_unlabeled(config.method):
        batch["image_u1"] = rng.normal(size=(n, size, size, 3)).astype(np.float32)
    for i in range(2):
        state, metrics = step(state, batch, jax.random.key_data(jax.random.key(i)))
    assert int(state.step) == 2 and np.isfinite(float(metrics["loss"]))


@pytest.mark.parametrize("verbosity, info_shown", [(None, False), ("0", True)])
def test_library_info_logs_only_with_verbosity(verbosity, info_shown):
    """Progress lines must not drown in the libraries' INFO logs; --verbosity=0 brings them back."""
    code = (
        "from absl import logging; from cps_jax import main; "
        "main._run(lambda argv: logging.info('an info line') or logging.warning('a warning line'))"
    )
    args = [] if verbosity is None else [f"--verbosity={verbosity}"]
    out = subprocess.run(
        [sys.executable, "-c", code, "prog", *args], capture_output=True, text=True, cwd=ROOT
    )
    assert out.returncode == 0, out.stderr
    assert "a warning line" in out.stderr
    assert ("an info line" in out.stderr) == info_shown, out.stderr
