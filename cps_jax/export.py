"""A trained model in one self-describing file, to share it without the training workdir.

The file (suffix `.cpsj` by convention) is one msgpack document written with
`flax.serialization`: the training config as JSON (its `model` section rebuilds the network, its
`eval` section sets how it predicts), the class names, their colours, the data set's label id of
each class (for example Cityscapes `labelIds`) when it has them, the checkpoint step, and one or two
nets (`left`, `right`), each with its params and BatchNorm statistics. `cps-predict --model FILE`
reads it; with two nets it predicts their averaged-softmax ensemble.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os

import jax
import ml_collections
import numpy as np
from flax import serialization

from cps_jax.models.functional import net_graphdef

FORMAT = "cps_jax model"
VERSION = 1
NET_CHOICES = ("left", "right", "both")

# Data sets whose class table is a module's CLASS_NAMES, PALETTE and, where the data set stores
# other ids than the training ones, TRAIN_ID_TO_ID: read without opening the data.
_CLASS_TABLES = {
    "synthetic_streets": "cps_jax.data.synthetic_streets",
    "cityscapes": "cps_jax.data.cityscapes",
    "voc_aug": "cps_jax.data.voc",
}


@dataclasses.dataclass(frozen=True)
class Model:
    config: ml_collections.ConfigDict  # the training config
    nets: dict  # {"left"|"right": {"params": ..., "batch_stats": ...}}
    class_names: tuple[str, ...]
    palette: np.ndarray  # [C, 3] uint8
    label_ids: np.ndarray | None = None  # [C]: the data set's id of each class, if it has others
    step: int | None = None

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def graphdef(self):
        return net_graphdef(self.config.model, self.num_classes)


def class_table(data_config) -> tuple[tuple[str, ...], np.ndarray, np.ndarray | None]:
    """(class names, palette, label ids or None) of `config.data`'s data set; read from its module
    where there is one, else (a user's own folder) from the opened data set."""
    name = data_config.name
    if name not in _CLASS_TABLES:
        from cps_jax import datasets

        data = datasets.load(data_config)
        return tuple(data.class_names), np.asarray(data.palette, np.uint8), None
    module = importlib.import_module(_CLASS_TABLES[name])
    label_ids = getattr(module, "TRAIN_ID_TO_ID", None)
    return (
        tuple(module.CLASS_NAMES),
        np.asarray(module.PALETTE, np.uint8),
        None if label_ids is None else np.asarray(label_ids),
    )


def select_nets(nets: dict, which: str, source: str) -> dict:
    """`left`, `right` or `both` of `nets`, with an error naming `source` if one is missing."""
    if which not in NET_CHOICES:
        raise ValueError(f"--net: expected one of {NET_CHOICES}, got {which!r}")
    names = ("left", "right") if which == "both" else (which,)
    missing = [n for n in names if n not in nets]
    if missing:
        raise ValueError(
            f"--net={which}: {source} has no {' or '.join(missing)} net (it has: "
            f"{', '.join(sorted(nets)) or 'none'})"
        )
    return {n: nets[n] for n in names}


def save(model: Model, path: str) -> None:
    """Writes `model` to `path` atomically (a temporary file, then a rename)."""
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "config": model.config.to_json(),
        "class_names": list(model.class_names),
        "palette": np.asarray(model.palette, np.uint8),
        "label_ids": None if model.label_ids is None else np.asarray(model.label_ids),
        "step": model.step,
        "nets": jax.device_get(model.nets),
    }
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp"
    with open(tmp, "wb") as f:
        f.write(serialization.msgpack_serialize(payload))
    os.replace(tmp, path)


def load(path: str, flag: str = "--model") -> Model:
    """Reads a file written by `save`, with a clear error, naming `flag` and `path`, for anything
    else."""
    where = f"{flag} {path}" if flag else path
    try:
        with open(path, "rb") as f:
            payload = serialization.msgpack_restore(f.read())
    except OSError as error:
        raise ValueError(f"{where}: cannot read it ({error})") from error
    except Exception as error:  # msgpack raises several unrelated types on foreign bytes
        raise ValueError(f"{where}: not a cps_jax model file ({error})") from error
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(f"{where}: not a cps_jax model file (written by cps-export)")
    if payload.get("version", 0) > VERSION:
        raise ValueError(
            f"{where}: format version {payload['version']} is newer than this cps_jax "
            f"reads ({VERSION}); upgrade cps_jax"
        )
    return Model(
        config=ml_collections.ConfigDict(json.loads(payload["config"])),
        nets=payload["nets"],
        class_names=tuple(payload["class_names"]),
        palette=np.asarray(payload["palette"], np.uint8),
        label_ids=payload.get("label_ids"),
        step=payload.get("step"),
    )
