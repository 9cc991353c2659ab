"""Data sets by name: each gives random-access TFDS sources and its class metadata.

`config.data.name` picks one:

- `synthetic_streets`: generated (fields height, width, num_train, num_validation, domain,
  dataset_seed);
- `cityscapes`: 19 classes, train 2,975 / validation 500 (field manual_dir: the folder holding
  leftImg8bit_trainvaltest.zip and gtFine_trainvaltest.zip; not needed once prepared);
- `voc_aug`: PASCAL VOC 2012 + SBD, 21 classes, train_aug 10,582 / validation 1,449 (field
  manual_dir: VOCtrainval_11-May-2012.tar with benchmark.tgz or SegmentationClassAug/);
- `gta5`: GTA5, 24,966 game frames in the 19 Cityscapes classes, 1/20 held out as validation
  (field manual_dir: 01_images.zip .. 10_labels.zip, or the extracted images/ and labels/);
- `synthia`: SYNTHIA-RAND-CITYSCAPES, 9,400 rendered images in the 19 Cityscapes classes (the
  usual 16: classes=synthia.SYNTHIA_16), 1/20 held out (field manual_dir: RAND_CITYSCAPES/);
- `image_folder`: a user's own folder (fields folder, val_fraction, val_seed; see
  `cps_jax/data/image_folder.py`).

Prepared data go to `data.data_dir`, else $CPS_DATA_DIR, else ./data. Every source yields
{"image": uint8 [H, W, 3], "mask": uint8 [H, W, 1] (255: ignore), "id": bytes}; sizes may differ
between examples.
"""

import dataclasses
import os
from typing import Any, Sequence

import ml_collections
import numpy as np

from cps_jax.data.labels import id_table
from cps_jax.data.sources import MappedSource

NAMES = ("synthetic_streets", "cityscapes", "voc_aug", "gta5", "synthia", "image_folder")

# The `image_folder` fields of `config.data` and their defaults: no folder; without a val/
# sub-folder, a deterministic 1/10 of images/ (seed 0) is held out for validation.
IMAGE_FOLDER_DEFAULTS = {"folder": "", "val_fraction": "1/10", "val_seed": 0}
# Every field of `config.data` that a loader reads besides `name` and the generator's own
# (synthetic_streets), with its default. The base config (configs/common.py) declares them from
# here, and `data_config` (cps-prepare NAME, without a config file) starts from them.
DATA_DEFAULTS = {
    "data_dir": "",  # where prepared data go: "" -> $CPS_DATA_DIR, else ./data
    "manual_dir": "",  # cityscapes, voc_aug, gta5, synthia: the folder of the downloaded archives
    # Train and evaluate on these classes only (names, in order; the rest become ignore, 255);
    # () keeps every class of the data set.
    "classes": (),
    **IMAGE_FOLDER_DEFAULTS,
}


@dataclasses.dataclass(frozen=True)
class SegmentationData:
    train: Any  # random-access source: len() and [i] -> {"image", "mask", "id", ...}
    validation: Any
    class_names: Sequence[str]
    palette: np.ndarray  # [C, 3] uint8
    name: str
    # Images without masks (every pixel 255), for the unlabeled stream only; None if there are none.
    unlabeled: Any = None
    # Image-level labels of images without masks, {id: multi-hot uint8 [C]} (image_folder's
    # tags.json); images with masks have theirs from the mask.
    tags: dict = dataclasses.field(default_factory=dict)
    # Domain adaptation: a labeled source domain (config.data.source) of the same classes; its
    # train split is the labeled stream and this data set's train split is unlabeled.
    source: "SegmentationData | None" = None

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def train_ids(self) -> list[str]:
        return [_as_str(self.train[i]["id"]) for i in range(len(self.train))]

    def unlabeled_pool(self, indices) -> tuple[Any, np.ndarray]:
        """(source, indices) of the unlabeled stream: train[indices], then every example of
        `unlabeled` (if any)."""
        if self.unlabeled is None:
            return self.train, np.asarray(indices)
        pool = _Concat([(self.train, np.asarray(indices)), (self.unlabeled, None)])
        return pool, np.arange(len(pool))


class _Concat:
    """Random access to sources one after the other; each part is (source, indices or None)."""

    def __init__(self, parts):
        self.parts = [(s, np.arange(len(s)) if ix is None else ix) for s, ix in parts]
        self.ends = np.cumsum([len(ix) for _, ix in self.parts])

    def __len__(self):
        return int(self.ends[-1]) if len(self.ends) else 0

    def __getitem__(self, i):
        if not 0 <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} examples")
        k = int(np.searchsorted(self.ends, i, side="right"))
        source, indices = self.parts[k]
        return source[int(indices[i - (self.ends[k - 1] if k else 0)])]


def _as_str(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def resolve_data_dir(data_config) -> str:
    return (
        data_config.data_dir or os.environ.get("CPS_DATA_DIR") or os.path.join(os.getcwd(), "data")
    )


def data_config(name: str, **fields) -> ml_collections.ConfigDict:
    """A `config.data` for data set `name`: DATA_DEFAULTS with the given fields (None values left
    out); what `cps-prepare NAME --manual_dir ...` builds. The generator's fields of
    synthetic_streets, when not given, take the generator's defaults."""
    if name not in NAMES:
        raise ValueError(f"unknown data set {name!r}; expected one of: {', '.join(NAMES)}")
    given = {k: v for k, v in fields.items() if v is not None}
    return ml_collections.ConfigDict({"name": name, **DATA_DEFAULTS, **given})


def _segmentation_data(name: str, splits: dict, class_names, palette, tags=None):
    """The data set of `splits`: {"train", "validation"[, "unlabeled"]} sources."""
    return SegmentationData(
        train=splits["train"],
        validation=splits["validation"],
        class_names=class_names,
        palette=palette,
        name=name,
        unlabeled=splits.get("unlabeled"),
        tags=tags or {},
    )


# The loaders import their modules when called: TFDS and the renderer load only where needed.
def _synthetic_streets(data_config, data_dir):
    from cps_jax.data import synthetic_streets

    # The generator's argument -> its field; a field that `data_config` (cps-prepare NAME) was not
    # given takes the generator's default.
    fields = {"height": "height", "width": "width", "num_train": "num_train"}
    fields.update(num_validation="num_validation", domain="domain", seed="dataset_seed")
    kwargs = {arg: data_config[f] for arg, f in fields.items() if f in data_config}
    builder = synthetic_streets.prepare(data_dir, **kwargs)
    splits = {split: builder.as_data_source(split=split) for split in ("train", "validation")}
    module = synthetic_streets
    return _segmentation_data("synthetic_streets", splits, module.CLASS_NAMES, module.PALETTE)


def _from_archives(module, name: str, data_config, data_dir) -> SegmentationData:
    """The data set that `module` builds from the downloaded archives in `manual_dir`."""
    splits = module.sources(data_dir, data_config.manual_dir)
    return _segmentation_data(name, splits, module.CLASS_NAMES, module.PALETTE)


def _cityscapes(data_config, data_dir):
    from cps_jax.data import cityscapes

    return _from_archives(cityscapes, "cityscapes", data_config, data_dir)


def _voc_aug(data_config, data_dir):
    from cps_jax.data import voc

    return _from_archives(voc, "voc_aug", data_config, data_dir)


def _gta5(data_config, data_dir):
    from cps_jax.data import gta5

    return _from_archives(gta5, "gta5", data_config, data_dir)


def _synthia(data_config, data_dir):
    from cps_jax.data import synthia

    return _from_archives(synthia, "synthia", data_config, data_dir)


def _image_folder(data_config, data_dir):
    from cps_jax.data import image_folder

    folder = data_config.folder
    splits = image_folder.sources(data_dir, folder, data_config.val_fraction, data_config.val_seed)
    spec = image_folder.read_class_file(os.path.join(folder, image_folder.CLASS_FILE))
    layout = image_folder.scan(folder, data_config.val_fraction, data_config.val_seed)
    tags = image_folder.tags(folder, spec, layout)
    return _segmentation_data("image_folder", splits, spec.names, spec.palette, tags)


_LOADERS = {
    "synthetic_streets": _synthetic_streets,
    "cityscapes": _cityscapes,
    "voc_aug": _voc_aug,
    "gta5": _gta5,
    "synthia": _synthia,
    "image_folder": _image_folder,
}


def load(data_config) -> SegmentationData:
    """Prepares (if needed) and opens the data set named by `config.data.name`.

    Problems with the input files raise `cps_jax.data.archives.DataError` naming the file.
    """
    loader = _LOADERS.get(data_config.name)
    if loader is None:
        raise ValueError(
            f"config.data.name: unknown data set {data_config.name!r}; "
            f"expected one of: {', '.join(repr(n) for n in NAMES)}"
        )
    data = loader(data_config, resolve_data_dir(data_config))
    classes = tuple(data_config.classes)
    data = restrict_classes(data, classes) if classes else data
    source_config = data_config.get("source")
    if source_config is not None and source_config.name:
        source = load(source_config)
        if tuple(source.class_names) != tuple(data.class_names):
            raise ValueError(
                f"config.data.source: its classes ({', '.join(source.class_names)}) must be the "
                f"target's ({', '.join(data.class_names)}), in order; set "
                "config.data.source.classes"
            )
        data = dataclasses.replace(data, source=source)
    return data


def source_defaults() -> dict:
    """The fields of `config.data.source` (a labeled source domain) and their defaults: the
    loader's fields and the generator's, name "" (no source)."""
    return {
        "name": "",
        **DATA_DEFAULTS,
        "height": 96,
        "width": 192,
        "num_train": 1000,
        "num_validation": 200,
        "domain": "render",
        "dataset_seed": 1,
    }


def restrict_classes(data: SegmentationData, names: Sequence[str]) -> SegmentationData:
    """The data set with only the classes `names` (in that order): their pixels are relabeled
    0..K-1, every other class becomes the ignore label (255) in training and evaluation alike."""
    unknown = [n for n in names if n not in data.class_names]
    if unknown or len(set(names)) != len(names):
        raise ValueError(
            f"config.data.classes: expected distinct class names of {data.name} "
            f"({', '.join(data.class_names)}), got {', '.join(names)}"
        )
    table = id_table({list(data.class_names).index(name): new for new, name in enumerate(names)})
    relabel = lambda example: {**example, "mask": table[np.asarray(example["mask"])]}
    remap = lambda source: None if source is None else MappedSource(source, relabel)
    keep = [list(data.class_names).index(n) for n in names]
    return dataclasses.replace(
        data,
        train=remap(data.train),
        validation=remap(data.validation),
        unlabeled=remap(data.unlabeled),
        class_names=tuple(names),
        palette=np.asarray(data.palette)[keep],
        tags={ident: vector[keep] for ident, vector in data.tags.items()},
    )


def load_shared(data_config) -> SegmentationData:
    """`load` on process 0 first, then on the others: hosts that share a data folder prepare it
    once, and a host with a folder of its own prepares its own copy."""
    from cps_jax import distributed  # imports JAX: only where it is needed, as the loaders

    return distributed.process_zero_first(lambda: load(data_config), "prepare data")
