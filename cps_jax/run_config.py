"""The config a run was trained with, kept beside its checkpoints as `W/config.json`.

cps-train writes it; cps-eval, cps-export and cps-predict use it when no --config is given. A
config given anyway, or one a resumed run brings, must agree with it on the fields that decide
the saved arrays (`MATCHED`); the first that differs is named.
"""

import json
import os

import ml_collections

from cps_jax.errors import ConfigError

CONFIG_FILE = "config.json"
# The fields that decide which arrays a checkpoint holds, and their shapes. The model's
# execution-only fields (conv_impl, dtype, pretrained) may differ.
MATCHED = (
    "method",
    "data.name",
    "data.classes",
    "model.backbone",
    "model.stem",
    "model.output_stride",
    "model.width",
    "model.aspp_channels",
    "model.low_level_channels",
    "model.decoder_channels",
)
# A resumed run restores the optimizer state too.
MATCHED_ON_RESUME = MATCHED + ("optim.name",)


def path(workdir: str) -> str:
    return os.path.join(workdir, CONFIG_FILE)


def save(config, workdir: str) -> None:
    """Writes `config` to W/config.json atomically (call on process 0 only)."""
    os.makedirs(workdir, exist_ok=True)
    tmp = path(workdir) + ".tmp"
    with open(tmp, "w") as f:
        f.write(config.to_json(indent=1, sort_keys=True) + "\n")
    os.replace(tmp, path(workdir))


def load(workdir: str) -> ml_collections.ConfigDict | None:
    """The run's config, or None for a run without one."""
    try:
        with open(path(workdir)) as f:
            return ml_collections.ConfigDict(json.load(f))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        raise ConfigError(f"{path(workdir)}: not a readable config ({error})") from None


def _value(config, field: str):
    """The field's value as JSON has it (tuples read back as lists), or a marker if absent."""
    node = config
    for key in field.split("."):
        if not isinstance(node, (dict, ml_collections.ConfigDict)) or key not in node:
            return "<absent>"
        node = node[key]
    return json.loads(json.dumps(node.to_dict() if hasattr(node, "to_dict") else node))


def check_matches(config, saved, workdir: str, fields=MATCHED, advice: str = "") -> None:
    """ConfigError naming the first of `fields` on which `config` and the run's `saved` differ."""
    for field in fields:
        given, trained = _value(config, field), _value(saved, field)
        if given != trained:
            raise ConfigError(
                f"config.{field} is {given!r}, but the run in {workdir} was trained with "
                f"{trained!r} ({path(workdir)}){advice}"
            )


def check_resume(config, workdir: str, checkpoints: str) -> None:
    """Before a run resumes from `checkpoints`: its config must agree with the saved one."""
    saved = load(workdir)
    has_steps = os.path.isdir(checkpoints) and any(d.isdigit() for d in os.listdir(checkpoints))
    if saved is not None and has_steps:
        advice = "; a run with another model needs another --workdir"
        check_matches(config, saved, workdir, MATCHED_ON_RESUME, advice)


def resolve(config, workdir: str):
    """The config of cps-eval, cps-export and cps-predict: the one given, if it agrees with the
    run's; else the run's own."""
    saved = load(workdir)
    if config is None:
        if saved is None:
            raise ConfigError(
                f"--config: needed, since {workdir} holds no {CONFIG_FILE} (the config that "
                "cps-train saves with a run)"
            )
        return saved
    if saved is not None:
        check_matches(config, saved, workdir, advice="; leave --config out to use the run's own")
    return config
