"""Each console script defines only its own flags: its --help lists them, with its usage, and a flag
of another command is refused. (absl's flags are process-global: were every command's flags
defined at import, each script would list and accept them all.)"""

import re

import pytest

import cli_runs

MULTIHOST = {"coordinator_address", "num_processes", "process_id"}
OWN_FLAGS = {
    "train": {"config", "workdir", *MULTIHOST},
    "eval": {"workdir", "step", "split", "config", *MULTIHOST},
    "prepare": {"config", "data_dir", "manual_dir", "folder", "val_fraction", *MULTIHOST},
    "export": {"workdir", "step", "net", "output", "config"},
    "predict": {
        "input", "output", "model", "workdir", "step", "config", "net", "ids", "outputs", "alpha",
        "batch_size", "mode", "window", "stride", "scales", "flip", "pad_multiple",
    },  # fmt: skip
}


def _listed_flags(help_text: str) -> set:
    """The flags a --help lists, one per line as `  --name: help` (booleans: `  --[no]name:`)."""
    return set(re.findall(r"^  --(?:\[no\])?(\w+):", help_text, flags=re.MULTILINE))


@pytest.fixture(scope="module")
def helps() -> dict:
    return {entry: cli_runs.run(entry, "--help", timeout=120) for entry in OWN_FLAGS}


@pytest.mark.slow
@pytest.mark.parametrize("entry", sorted(OWN_FLAGS))
def test_help_lists_the_usage_and_only_the_commands_own_flags(helps, entry):
    out = helps[entry]
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(f"cps-{entry}: "), out.stdout[:200]  # its module docstring
    assert f"\ncps-{entry} --" in out.stdout  # a usage line
    listed = _listed_flags(out.stdout)
    assert listed == OWN_FLAGS[entry], (
        f"missing {sorted(OWN_FLAGS[entry] - listed)}, another's {sorted(listed - OWN_FLAGS[entry])}"
    )


@pytest.mark.slow
def test_help_shows_each_flags_help_and_default(helps):
    predict_help = helps["predict"].stdout
    assert "--step: With --workdir, the checkpoint: latest, best, or a step number. (default: " \
        "'latest')" in predict_help  # fmt: skip
    assert re.search(r"--outputs: What to write\. \(default: 'labels,color,overlay'\)", predict_help)
    assert "--[no]flip: Override config.eval.flip." in predict_help
    assert "several, separated by commas" in helps["eval"].stdout  # cps-eval's own --step help


def test_short_h_is_help():
    out = cli_runs.run("export", "-h", timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("cps-export: ") and _listed_flags(out.stdout) == OWN_FLAGS["export"]


@pytest.mark.parametrize(
    "entry, foreign",
    [("train", "--input=a.png"), ("train", "--step=best"), ("predict", "--split=train"),
     ("prepare", "--workdir=runs/x"), ("eval", "--manual_dir=downloads")],
)  # fmt: skip
@pytest.mark.slow
def test_another_commands_flag_is_a_usage_error(entry, foreign):
    out = cli_runs.run(entry, foreign, timeout=120)
    name = foreign[2:].split("=")[0]
    assert out.returncode == 2, out.stderr
    assert out.stderr.startswith(f"error: Unknown command line flag '{name}'"), out.stderr
