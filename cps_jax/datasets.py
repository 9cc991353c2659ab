"""Data sets by name: each gives random-access TFDS sources and its class metadata."""

import dataclasses
import os
from typing import Any, Sequence

import numpy as np


@dataclasses.dataclass(frozen=True)
class SegmentationData:
    train: Any  # random-access source: len() and [i] -> {"image", "mask", "id", ...}
    validation: Any
    class_names: Sequence[str]
    palette: np.ndarray  # [C, 3] uint8
    name: str

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def train_ids(self) -> list[str]:
        return [_as_str(self.train[i]["id"]) for i in range(len(self.train))]


def _as_str(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def resolve_data_dir(data_config) -> str:
    return (
        data_config.data_dir or os.environ.get("CPS_DATA_DIR") or os.path.join(os.getcwd(), "data")
    )


def load(data_config) -> SegmentationData:
    """Prepares (if needed) and opens the data set named by `config.data.name`."""
    data_dir = resolve_data_dir(data_config)
    if data_config.name == "synthetic_streets":
        from cps_jax.data import synthetic_streets

        builder = synthetic_streets.prepare(
            data_dir,
            height=data_config.height,
            width=data_config.width,
            num_train=data_config.num_train,
            num_validation=data_config.num_validation,
            domain=data_config.domain,
            seed=data_config.dataset_seed,
        )
        return SegmentationData(
            train=builder.as_data_source(split="train"),
            validation=builder.as_data_source(split="validation"),
            class_names=synthetic_streets.CLASS_NAMES,
            palette=synthetic_streets.PALETTE,
            name="synthetic_streets",
        )
    raise ValueError(
        f"config.data.name: unknown data set {data_config.name!r}; "
        "expected one of: 'synthetic_streets'"
    )
