"""PASCAL VOC 2012 with the SBD masks ("VOC aug"): train_aug (10,582 images) and val (1,449).

The usual construction (as in the CPS reference and most semi-supervised segmentation work):
train_aug = (VOC segmentation train ∪ SBD train ∪ SBD val) minus VOC segmentation val. Masks come
from VOC's SegmentationClass (palette PNG indices, 255 = boundary, kept as ignore) where VOC has
one, else from SBD (`benchmark.tgz`: `dataset/cls/<id>.mat`, struct `GTcls.Segmentation`), or from
the widely shared `SegmentationClassAug` PNG folder (or .zip) instead of SBD. Images are VOC's
JPEGs, stored as they are (no re-encoding loss, a third of the size of PNG); ids are VOC's
('2007_000032'), as in the reference's list files.

Inputs in the manual dir: `VOCtrainval_11-May-2012.tar` (or its extracted `VOCdevkit/`), and
`benchmark.tgz` (or `benchmark_RELEASE/`) or `SegmentationClassAug/` (or `SegmentationClassAug.zip`).

  sources(data_dir, manual_dir)["train"][0]  # {"image" [H,W,3], "mask" [H,W,1], "id"}
"""

import collections
import dataclasses
import io
import os
import re

import numpy as np
import scipy.io
from etils import epath

from cps_jax.data import archives

CLASS_NAMES = (
    "background",
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
)
NUM_CLASSES = len(CLASS_NAMES)  # 21
NUM_TRAIN_AUG, NUM_VALIDATION = 10582, 1449


def color_map(n: int = 256) -> np.ndarray:
    """[n, 3] uint8: the VOC palette (VOCdevkit `labelcolormap`): the bits of the class index are
    spread over R, G, B from the most significant bit down."""
    out = np.zeros((n, 3), np.uint8)
    for i in range(n):
        c, r, g, b = i, 0, 0, 0
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        out[i] = (r, g, b)
    return out


PALETTE = color_map(NUM_CLASSES)  # [21, 3]

VOC_TAR, VOC_FOLDER = "VOCtrainval_11-May-2012.tar", "VOCdevkit"
SBD_TGZ, SBD_FOLDER = "benchmark.tgz", "benchmark_RELEASE"
AUG_FOLDER, AUG_ZIP = "SegmentationClassAug", "SegmentationClassAug.zip"
_AUG_RE = re.compile(r"(?:^|/)([^/]+)\.png$")

Item = collections.namedtuple("Item", ["id", "image", "mask_kind", "mask"])  # member names


@dataclasses.dataclass
class Inputs:
    """The opened inputs: VOC (`voc`, member prefix `voc_root`) and SBD or SegmentationClassAug."""

    voc: archives.Archive
    voc_root: str  # e.g. 'VOCdevkit/VOC2012/'
    extra: archives.Archive
    extra_kind: str  # 'sbd' or 'aug'
    extra_masks: dict  # id -> member name of its mask in `extra`
    extra_train_ids: list  # the ids `extra` adds to train_aug


def _root_of(archive: archives.Archive, suffix: str, what: str) -> str:
    """The member-name prefix under which `suffix` lies (layouts differ between copies)."""
    hits = sorted(n for n in archive.names() if n == suffix or n.endswith("/" + suffix))
    if not hits:
        raise archives.DataError(f"{archive.path}: no member .../{suffix}; is it {what}?")
    return hits[0][: -len(suffix)]


def _read_ids(archive: archives.Archive, name: str) -> list[str]:
    text = archive.read(name).decode("utf-8", errors="replace")
    return [line.split()[0] for line in text.splitlines() if line.strip()]


def find_inputs(manual_dir: str) -> tuple[str, str, str]:
    """(VOC path, SBD or Aug path, 'sbd' or 'aug') in `manual_dir`; SBD when both are there."""
    archives.require_dir(
        manual_dir, f"VOC manual_dir (the folder holding {VOC_TAR})", archives.MANUAL_DIR_FLAG
    )
    voc_path = archives.find_input(manual_dir, [VOC_TAR, VOC_FOLDER])
    if voc_path is None:
        raise archives.DataError(
            f"{os.path.join(manual_dir, VOC_TAR)}: not found (nor an extracted {VOC_FOLDER}/); "
            "download it from http://host.robots.ox.ac.uk/pascal/VOC/voc2012/"
        )
    sbd_path = archives.find_input(manual_dir, [SBD_TGZ, SBD_FOLDER])
    if sbd_path is not None:
        return voc_path, sbd_path, "sbd"
    aug_path = archives.find_input(manual_dir, [AUG_FOLDER, AUG_ZIP])
    if aug_path is not None:
        return voc_path, aug_path, "aug"
    raise archives.DataError(
        f"{os.path.join(manual_dir, SBD_TGZ)}: not found (SBD; nor an extracted {SBD_FOLDER}/, "
        f"nor {AUG_FOLDER}/ or {AUG_ZIP} instead); VOC aug needs one of them next to {VOC_TAR}"
    )


def open_inputs(manual_dir: str) -> Inputs:
    voc_path, extra_path, kind = find_inputs(manual_dir)
    voc = archives.Archive(voc_path, "VOC 2012 archive")
    voc_root = _root_of(voc, "ImageSets/Segmentation/val.txt", VOC_TAR)
    if kind == "sbd":
        sbd = archives.Archive(extra_path, "SBD archive")
        root = _root_of(sbd, "dataset/train.txt", SBD_TGZ)
        ids = _read_ids(sbd, root + "dataset/train.txt") + _read_ids(sbd, root + "dataset/val.txt")
        masks = {i: f"{root}dataset/cls/{i}.mat" for i in ids}
        return Inputs(voc, voc_root, sbd, "sbd", {i: n for i, n in masks.items() if n in sbd}, ids)
    aug = archives.Archive(extra_path, "SegmentationClassAug")
    masks = {}
    for name in aug.names():
        m = _AUG_RE.search(name)
        if m and "__MACOSX" not in name and not m.group(1).startswith("."):
            masks[m.group(1)] = name
    if not masks:
        raise archives.DataError(f"{extra_path}: no <id>.png mask in it; is it {AUG_FOLDER}?")
    return Inputs(voc, voc_root, aug, "aug", masks, sorted(masks))


def train_aug_ids(voc_train, voc_val, extra_ids) -> list[str]:
    """(VOC train ∪ SBD train ∪ SBD val) minus VOC val, sorted."""
    return sorted((set(voc_train) | set(extra_ids)) - set(voc_val))


def plan(inputs: Inputs) -> dict[str, list[Item]]:
    """{'train': train_aug, 'validation': VOC val} items: the image and mask member of each id."""
    voc, root = inputs.voc, inputs.voc_root
    split_lists = {
        s: _read_ids(voc, f"{root}ImageSets/Segmentation/{s}.txt") for s in ("train", "val")
    }
    ids = {
        "train": train_aug_ids(split_lists["train"], split_lists["val"], inputs.extra_train_ids),
        "validation": sorted(set(split_lists["val"])),
    }
    # SBD / Aug masks in the order they are stored, so a .tgz is read in one forward pass.
    order = {n: k for k, n in enumerate(inputs.extra.storage_order(inputs.extra_masks.values()))}
    out = {}
    for split, split_ids in ids.items():
        items = []
        for i in split_ids:
            image = f"{root}JPEGImages/{i}.jpg"
            if image not in voc:
                raise archives.DataError(f"{voc.path}: missing member {image!r} (image of {i})")
            voc_mask = f"{root}SegmentationClass/{i}.png"
            if voc_mask in voc:
                items.append(Item(i, image, "voc", voc_mask))
            elif split == "train" and i in inputs.extra_masks:
                items.append(Item(i, image, inputs.extra_kind, inputs.extra_masks[i]))
            else:
                where = voc.path if split == "validation" else f"{voc.path} or {inputs.extra.path}"
                raise archives.DataError(f"{where}: no mask for {i} (listed in the {split} split)")
        items.sort(key=lambda it: (it.mask_kind == "voc", order.get(it.mask, 0), it.id))
        out[split] = items
    return out


def sbd_mask(data: bytes, source: str) -> np.ndarray:
    """[H, W] uint8 class indices of an SBD `cls/<id>.mat` file (struct GTcls, field Segmentation)."""
    try:
        mat = scipy.io.loadmat(io.BytesIO(data), squeeze_me=True, struct_as_record=False)
        mask = np.asarray(mat["GTcls"].Segmentation)
    except (KeyError, AttributeError, ValueError, TypeError, OSError) as error:
        raise archives.DataError(
            f"{source}: not an SBD class mask (a .mat file with struct GTcls.Segmentation): "
            f"{error!r}"
        ) from None
    if mask.ndim != 2 or not np.issubdtype(mask.dtype, np.integer):
        raise archives.DataError(
            f"{source}: GTcls.Segmentation must be a 2-D integer array, got {mask.dtype} "
            f"{mask.shape}"
        )
    return mask.astype(np.uint8)


def convert(inputs: Inputs, item: Item) -> dict:
    image_source = f"{inputs.voc.path}:{item.image}"
    image, image_hw = archives.rgb_image(inputs.voc.read(item.image), image_source)
    archive = inputs.voc if item.mask_kind == "voc" else inputs.extra
    mask_source = f"{archive.path}:{item.mask}"
    data = archive.read(item.mask)
    mask = (
        sbd_mask(data, mask_source)
        if item.mask_kind == "sbd"
        else archives.read_index_mask(data, mask_source)
    )
    archives.check_same_size(mask.shape, image_hw, mask_source, image_source)
    archives.check_mask_values(mask, NUM_CLASSES, mask_source)
    return archives.example(item.id, image, mask)


class VocAug(archives.SegmentationBuilder):
    """PASCAL VOC 2012 + SBD: train (train_aug, 10,582) and validation (1,449)."""

    name = "cps_voc_aug"
    DESCRIPTION = "PASCAL VOC 2012 segmentation with the SBD masks (train_aug / val)."
    HOMEPAGE = "http://host.robots.ox.ac.uk/pascal/VOC/voc2012/"
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        f"Put {VOC_TAR} and {SBD_TGZ} (or a {AUG_FOLDER}/ folder) in the manual dir."
    )
    # TFDS would locate this file through `importlib_resources` (not a dependency here).
    code_path = epath.Path(os.path.abspath(__file__))

    def _split_generators(self, dl_manager):
        inputs = open_inputs(os.fspath(dl_manager.manual_dir))
        return {
            split: self._generate_examples(inputs, items, split)
            for split, items in plan(inputs).items()
        }

    def _generate_examples(self, inputs, items, split):
        for item in archives.progress(items, f"voc_aug {split}"):
            yield item.id, convert(inputs, item)


def builder(data_dir: str) -> VocAug:
    return VocAug.at(data_dir)


def prepare(data_dir: str, manual_dir: str) -> VocAug:
    """The builder, written from the inputs in `manual_dir` unless already in `data_dir`."""
    return archives.prepare_from(builder(data_dir), manual_dir, find_inputs)


def sources(data_dir: str, manual_dir: str = "") -> dict:
    """{'train', 'validation'} random-access sources of {"image", "mask", "id"}."""
    b = prepare(data_dir, manual_dir)
    return {split: b.as_data_source(split=split) for split in ("train", "validation")}
