"""Cityscapes: the official label table and a TFDS builder that needs no TensorFlow.

The label table is the one of cityscapesScripts (`cityscapesscripts/helpers/labels.py`): 34 label
ids, 19 of them evaluated under train ids 0..18, the others mapped to the ignore value 255.

The builder `cps_cityscapes` reads the official `leftImg8bit_trainvaltest.zip` and
`gtFine_trainvaltest.zip` in place and stores the original PNG images and the train-id masks;
example ids are 'city/file stem' ('aachen/aachen_000000_000019'). A data dir that holds TFDS's own
`cityscapes/semantic_segmentation` (array_record) is read as it is, with its label ids mapped.

  sources(data_dir, manual_dir)["train"][0]  # {"image" [H,W,3], "mask" [H,W,1], "id"}
"""

import collections
import os
import re

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

from cps_jax.data import archives
from cps_jax.data.labels import IGNORE_LABEL, id_table
from cps_jax.data.sources import MappedSource

Label = collections.namedtuple("Label", ["name", "id", "train_id", "category", "color"])

# fmt: off
LABELS = (
    #     name                    id  train_id  category       color
    Label("unlabeled",             0, 255, "void",         (0, 0, 0)),
    Label("ego vehicle",           1, 255, "void",         (0, 0, 0)),
    Label("rectification border",  2, 255, "void",         (0, 0, 0)),
    Label("out of roi",            3, 255, "void",         (0, 0, 0)),
    Label("static",                4, 255, "void",         (0, 0, 0)),
    Label("dynamic",               5, 255, "void",         (111, 74, 0)),
    Label("ground",                6, 255, "void",         (81, 0, 81)),
    Label("road",                  7,   0, "flat",         (128, 64, 128)),
    Label("sidewalk",              8,   1, "flat",         (244, 35, 232)),
    Label("parking",               9, 255, "flat",         (250, 170, 160)),
    Label("rail track",           10, 255, "flat",         (230, 150, 140)),
    Label("building",             11,   2, "construction", (70, 70, 70)),
    Label("wall",                 12,   3, "construction", (102, 102, 156)),
    Label("fence",                13,   4, "construction", (190, 153, 153)),
    Label("guard rail",           14, 255, "construction", (180, 165, 180)),
    Label("bridge",               15, 255, "construction", (150, 100, 100)),
    Label("tunnel",               16, 255, "construction", (150, 120, 90)),
    Label("pole",                 17,   5, "object",       (153, 153, 153)),
    Label("polegroup",            18, 255, "object",       (153, 153, 153)),
    Label("traffic light",        19,   6, "object",       (250, 170, 30)),
    Label("traffic sign",         20,   7, "object",       (220, 220, 0)),
    Label("vegetation",           21,   8, "nature",       (107, 142, 35)),
    Label("terrain",              22,   9, "nature",       (152, 251, 152)),
    Label("sky",                  23,  10, "sky",          (70, 130, 180)),
    Label("person",               24,  11, "human",        (220, 20, 60)),
    Label("rider",                25,  12, "human",        (255, 0, 0)),
    Label("car",                  26,  13, "vehicle",      (0, 0, 142)),
    Label("truck",                27,  14, "vehicle",      (0, 0, 70)),
    Label("bus",                  28,  15, "vehicle",      (0, 60, 100)),
    Label("caravan",              29, 255, "vehicle",      (0, 0, 90)),
    Label("trailer",              30, 255, "vehicle",      (0, 0, 110)),
    Label("train",                31,  16, "vehicle",      (0, 80, 100)),
    Label("motorcycle",           32,  17, "vehicle",      (0, 0, 230)),
    Label("bicycle",              33,  18, "vehicle",      (119, 11, 32)),
    Label("license plate",        -1,  -1, "vehicle",      (0, 0, 142)),
)
# fmt: on

_EVALUATED = sorted(
    (lab for lab in LABELS if 0 <= lab.train_id < IGNORE_LABEL), key=lambda x: x.train_id
)
CLASS_NAMES = tuple(lab.name.replace(" ", "_") for lab in _EVALUATED)
NUM_CLASSES = len(CLASS_NAMES)  # 19
PALETTE = np.array([lab.color for lab in _EVALUATED], np.uint8)  # [19, 3]

# label id (the pixel values of gtFine `*_labelIds.png`) -> train id; anything unknown is ignored.
ID_TO_TRAIN_ID = id_table(
    {lab.id: lab.train_id for lab in LABELS if lab.id >= 0 and lab.train_id >= 0}
)
# train id -> label id (to write predictions in the official `*_labelIds` format).
TRAIN_ID_TO_ID = np.array([lab.id for lab in _EVALUATED], np.uint8)  # [19]


# ------------------------------------------------------------------------------- the TFDS builder
IMAGES_ZIP = "leftImg8bit_trainvaltest.zip"
LABELS_ZIP = "gtFine_trainvaltest.zip"
NUM_TRAIN, NUM_VALIDATION = 2975, 500  # fine annotations; the test split has no public labels
_SPLIT_DIRS = {"train": "train", "validation": "val"}
# Member names as in the zips ('leftImg8bit/train/aachen/aachen_000000_000019_leftImg8bit.png') or
# in their extracted folders ('train/aachen/...').
_IMAGE_RE = re.compile(r"(?:^|/)(train|val)/([^/]+)/([^/]+)_leftImg8bit\.png$")
_LABEL_RE = re.compile(r"(?:^|/)(train|val)/([^/]+)/([^/]+)_gtFine_labelIds\.png$")

Item = collections.namedtuple("Item", ["id", "image", "label"])  # id and the two member names


def image_id(city: str, stem: str) -> str:
    """'aachen', 'aachen_000000_000019' -> 'aachen/aachen_000000_000019' (city/file stem)."""
    return f"{city}/{stem}"


def find_archives(manual_dir: str) -> tuple[str, str]:
    """Paths of the two official archives in `manual_dir` (or of their extracted leftImg8bit/,
    gtFine/ folders)."""
    archives.require_dir(
        manual_dir,
        f"Cityscapes manual_dir (the folder holding {IMAGES_ZIP} and {LABELS_ZIP})",
        archives.MANUAL_DIR_FLAG,
    )
    found = [
        archives.find_input(manual_dir, [zip_name, folder])
        for zip_name, folder in ((IMAGES_ZIP, "leftImg8bit"), (LABELS_ZIP, "gtFine"))
    ]
    missing = [n for n, path in zip((IMAGES_ZIP, LABELS_ZIP), found) if path is None]
    if missing:
        raise archives.DataError(
            f"{os.path.join(manual_dir, missing[0])}: not found. Cityscapes needs {IMAGES_ZIP} and "
            f"{LABELS_ZIP} (from https://www.cityscapes-dataset.com, registration required) in "
            f"{manual_dir}"
        )
    return found[0], found[1]


def open_archives(manual_dir: str) -> tuple[archives.Archive, archives.Archive]:
    images, labels = find_archives(manual_dir)
    return (
        archives.Archive(images, "Cityscapes image archive"),
        archives.Archive(labels, "Cityscapes label archive"),
    )


def index_archives(images: archives.Archive, labels: archives.Archive) -> dict[str, list[Item]]:
    """{'train': [Item], 'validation': [Item]}, sorted by id; every image must have its label."""
    by_key = {}
    for name in labels.names():
        m = _LABEL_RE.search(name)
        if m:
            by_key[m.groups()] = name
    if not by_key:
        raise archives.DataError(
            f"{labels.path}: no member <train|val>/<city>/<name>_gtFine_labelIds.png; is it "
            f"{LABELS_ZIP}?"
        )
    splits = {split: [] for split in _SPLIT_DIRS}
    split_of = {d: s for s, d in _SPLIT_DIRS.items()}
    for name in images.names():
        m = _IMAGE_RE.search(name)
        if not m:
            continue
        split_dir, city, stem = m.groups()
        if m.groups() not in by_key:
            raise archives.DataError(
                f"{labels.path}: missing gtFine/{split_dir}/{city}/{stem}_gtFine_labelIds.png, the "
                f"label of {name}"
            )
        splits[split_of[split_dir]].append(Item(image_id(city, stem), name, by_key[m.groups()]))
    for split, items in splits.items():
        if not items:
            raise archives.DataError(
                f"{images.path}: no member {_SPLIT_DIRS[split]}/<city>/<name>_leftImg8bit.png; is it "
                f"{IMAGES_ZIP}?"
            )
        items.sort()
    return splits


def convert(images: archives.Archive, labels: archives.Archive, item: Item) -> dict:
    """One example: the original PNG image, the label ids mapped to train ids (255: ignore)."""
    image_source = f"{images.path}:{item.image}"
    image, image_hw = archives.rgb_image(images.read(item.image), image_source)
    label_source = f"{labels.path}:{item.label}"
    ids = archives.read_index_mask(labels.read(item.label), label_source)
    archives.check_same_size(ids.shape, image_hw, label_source, image_source)
    return archives.example(item.id, image, ID_TO_TRAIN_ID[ids])


class CityscapesFine(archives.SegmentationBuilder):
    """Cityscapes, fine annotations, 19 train ids: train (2,975) and validation (500)."""

    name = "cps_cityscapes"  # TFDS's own builder is `cityscapes` (label ids, not train ids)
    DESCRIPTION = "Cityscapes fine annotations mapped to the 19 train ids (255: ignore)."
    HOMEPAGE = "https://www.cityscapes-dataset.com"
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        f"Download {IMAGES_ZIP} and {LABELS_ZIP} from {HOMEPAGE} (registration required) into "
        "the manual dir."
    )
    # TFDS would locate this file through `importlib_resources` (not a dependency here).
    code_path = epath.Path(os.path.abspath(__file__))

    def _split_generators(self, dl_manager):
        images, labels = open_archives(os.fspath(dl_manager.manual_dir))
        index = index_archives(images, labels)
        return {
            split: self._generate_examples(images, labels, items, split)
            for split, items in index.items()
        }

    def _generate_examples(self, images, labels, items, split):
        for item in archives.progress(items, f"cityscapes {split}"):
            yield item.id, convert(images, labels, item)


def builder(data_dir: str) -> CityscapesFine:
    return CityscapesFine.at(data_dir)


def prepare(data_dir: str, manual_dir: str) -> CityscapesFine:
    """The builder, written from the archives in `manual_dir` unless already in `data_dir`."""
    return archives.prepare_from(builder(data_dir), manual_dir, find_archives)


# ----------------------------------------------------- data prepared by TFDS's `cityscapes` builder
TFDS_CONFIG = "cityscapes/semantic_segmentation"


def tfds_prepared_dir(data_dir: str) -> str | None:
    """The newest version folder of TFDS's own `cityscapes/semantic_segmentation` in `data_dir`."""
    root = os.path.join(data_dir, *TFDS_CONFIG.split("/"))
    if not os.path.isdir(root):
        return None
    versions = [
        v
        for v in os.listdir(root)
        if re.fullmatch(r"\d+\.\d+\.\d+", v)
        and os.path.isfile(os.path.join(root, v, "dataset_info.json"))
    ]
    if not versions:
        return None
    newest = max(versions, key=lambda v: tuple(map(int, v.split("."))))
    return os.path.join(root, newest)


def from_tfds_example(example: dict) -> dict:
    """An example of TFDS's builder (`image_id` 'aachen_000000_000019', `image_left`,
    `segmentation_label` in label ids) in this package's form."""
    ident = example["image_id"]
    ident = ident.decode() if isinstance(ident, bytes) else str(ident)
    return {
        "image": example["image_left"],
        "mask": ID_TO_TRAIN_ID[example["segmentation_label"]],
        "id": image_id(ident.rsplit("_", 2)[0], ident),
    }


def tfds_prepared_sources(path: str) -> dict:
    """{'train', 'validation'}: random-access sources over a TFDS-prepared `cityscapes` folder."""
    b = tfds.builder_from_directory(path)
    if b.info.file_format != tfds.core.FileFormat.ARRAY_RECORD:
        raise archives.DataError(
            f"{path}: TFDS prepared it as {b.info.file_format.value}, which has no random access; "
            f"prepare it with file_format='array_record', or from the zips: "
            f"cps-prepare cityscapes --manual_dir DIR"
        )
    return {
        split: MappedSource(b.as_data_source(split=split), from_tfds_example)
        for split in _SPLIT_DIRS
    }


def sources(data_dir: str, manual_dir: str = "") -> dict:
    """{'train', 'validation'} random-access sources of {"image", "mask", "id"}.

    This package's build if it is in `data_dir`; else TFDS's own `cityscapes/semantic_segmentation`
    if that is there (and no `manual_dir` asks for a build); else a build from `manual_dir`.
    """
    b = builder(data_dir)
    if not archives.is_prepared(b):
        tfds_dir = tfds_prepared_dir(data_dir)
        if tfds_dir and not manual_dir:
            return tfds_prepared_sources(tfds_dir)
        b = prepare(data_dir, manual_dir)
    return {split: b.as_data_source(split=split) for split in _SPLIT_DIRS}
