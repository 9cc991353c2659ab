"""Configs build, overrides apply (derived values follow), and bad overrides fail clearly."""

import glob
import importlib.util
import os
import subprocess
import sys

import ml_collections
import pytest

from configs import demo

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
