"""GTA5 ("Playing for Data", Richter et al. 2016): a TFDS builder that needs no TensorFlow.

24,966 frames of the game Grand Theft Auto V with pixel labels in Cityscapes' label ids, the usual
synthetic source domain of adaptation to Cityscapes. The label ids are mapped to the 19 Cityscapes
train ids with the official table (`cityscapes.ID_TO_TRAIN_ID`; any other id, and 255, is the
ignore value 255); class names and palette are Cityscapes'.

Inputs in the manual dir: the downloaded parts `01_images.zip` .. `10_images.zip` and
`01_labels.zip` .. `10_labels.zip` (members `images/NNNNN.png`, `labels/NNNNN.png`), or the
extracted `images/` and `labels/` folders side by side (read instead of the zips when present).
Example ids are the file stems ('00001'), as in the list files of adaptation codebases.

GTA5 comes as one set; the builder holds out a deterministic 1/20 of it for validation (ceil(n/20)
images of the ids' sorted order, drawn with seed 0: 1,249 of 24,966) and trains on the rest
(23,717). An adaptation run validates on its target (Cityscapes) anyway.

Some frames of the published set differ in size from their labels (about 25, a known defect of
the data set); the sizes of all pairs are compared (from the PNG headers) before the conversion,
and those pairs are left out with a warning naming both files of each, as adaptation codebases
do, before the hold-out is drawn.

  sources(data_dir, manual_dir)["train"][0]  # {"image" [H,W,3], "mask" [H,W,1], "id"}
"""

import collections
import os
import re
import sys

from etils import epath

from cps_jax.data import archives, cityscapes

CLASS_NAMES = cityscapes.CLASS_NAMES
NUM_CLASSES = cityscapes.NUM_CLASSES  # 19
PALETTE = cityscapes.PALETTE
ID_TO_TRAIN_ID = cityscapes.ID_TO_TRAIN_ID  # GTA5's labels are Cityscapes label ids

NUM_IMAGES = 24966
VALIDATION_FRACTION, VALIDATION_SEED = "1/20", 0
NUM_TRAIN, NUM_VALIDATION = 23717, 1249  # of NUM_IMAGES, by `archives.hold_out`
NUM_PARTS = 10
HOMEPAGE = "https://download.visinf.tu-darmstadt.de/data/from_games/"
IMAGES_FOLDER, LABELS_FOLDER = "images", "labels"
_PART_RE = re.compile(r"^(\d\d)_(images|labels)\.zip$")
# Member names: 'images/00001.png' in a zip, '00001.png' in an extracted folder.
_MEMBER_RE = re.compile(r"(?:^|/)(\d+)\.png$")

Item = collections.namedtuple("Item", ["id", "images", "image", "labels", "label"])


def find_inputs(manual_dir: str) -> tuple[list[str], list[str]]:
    """(image inputs, label inputs): the extracted images/ and labels/ folders if present, else
    the NN_images.zip and NN_labels.zip parts (every part needs both of its zips)."""
    archives.require_dir(
        manual_dir,
        "GTA5 manual_dir (the folder holding 01_images.zip .. 10_labels.zip, or images/ and "
        "labels/)",
        archives.MANUAL_DIR_FLAG,
    )
    folders = [os.path.join(manual_dir, f) for f in (IMAGES_FOLDER, LABELS_FOLDER)]
    if any(os.path.isdir(f) for f in folders):
        for f in folders:
            if not os.path.isdir(f):
                raise archives.DataError(
                    f"{f}: not found; the extracted GTA5 folders images/ and labels/ go side by "
                    f"side in {manual_dir}"
                )
        return [folders[0]], [folders[1]]
    parts = collections.defaultdict(dict)
    for name in sorted(os.listdir(manual_dir)):
        m = _PART_RE.match(name)
        if m:
            parts[m.group(1)][m.group(2)] = os.path.join(manual_dir, name)
    if not parts:
        raise archives.DataError(
            f"{manual_dir}: no GTA5 data in it: expected the downloaded 01_images.zip .. "
            f"{NUM_PARTS:02d}_images.zip and 01_labels.zip .. {NUM_PARTS:02d}_labels.zip (from "
            f"{HOMEPAGE}), or their extracted {IMAGES_FOLDER}/ and {LABELS_FOLDER}/ folders"
        )
    for number, part in sorted(parts.items()):
        for kind, other in (("images", "labels"), ("labels", "images")):
            if kind not in part:
                raise archives.DataError(
                    f"{os.path.join(manual_dir, f'{number}_{kind}.zip')}: not found (the {kind} of "
                    f"{os.path.basename(part[other])})"
                )
    numbers = sorted(parts)
    return [parts[n]["images"] for n in numbers], [parts[n]["labels"] for n in numbers]


def open_inputs(manual_dir: str) -> tuple[list[archives.Archive], list[archives.Archive]]:
    image_paths, label_paths = find_inputs(manual_dir)
    return (
        [archives.Archive(p, "GTA5 image archive") for p in image_paths],
        [archives.Archive(p, "GTA5 label archive") for p in label_paths],
    )


def _members(parts: list[archives.Archive], kind: str) -> dict:
    """{id: (archive, member)} of the NNNNN.png files of `parts`; an id found twice is an error."""
    out = {}
    for archive in parts:
        for name in archive.names():
            m = _MEMBER_RE.search(name)
            if not m or "__MACOSX" in name:
                continue
            ident = m.group(1)
            if ident in out:
                other, other_name = out[ident]
                raise archives.DataError(
                    f"{archive.where(name)}: {kind} {ident} is also {other.where(other_name)}"
                )
            out[ident] = (archive, name)
    return out


def index(images: list[archives.Archive], labels: list[archives.Archive]) -> list[Item]:
    """Every image with its label, sorted by id; labels without an image are not used."""
    image_members, label_members = _members(images, "image"), _members(labels, "label")
    if not image_members:
        raise archives.DataError(
            f"{', '.join(a.path for a in images)}: no image NNNNN.png in it; is it GTA5's "
            f"{IMAGES_FOLDER}?"
        )
    items = []
    for ident in sorted(image_members, key=lambda i: (int(i), i)):
        image_archive, image = image_members[ident]
        if ident not in label_members:
            where = ", ".join(a.path for a in labels)
            raise archives.DataError(
                f"{where}: missing label {ident}.png, the label of {image_archive.where(image)}"
            )
        label_archive, label = label_members[ident]
        items.append(Item(ident, image_archive, image, label_archive, label))
    return items


def splits(items: list[Item]) -> dict[str, list[Item]]:
    """{'train', 'validation'}: the deterministic 1/20 hold-out (see the module docstring)."""
    where = items[0].images.path if items else "GTA5"
    return archives.hold_out(items, VALIDATION_FRACTION, VALIDATION_SEED, where)


def same_size_items(items: list[Item]) -> list[Item]:
    """`items` without the pairs whose image and label differ in size, each named in a warning."""
    pairs = [(it.images, it.image, it.labels, it.label) for it in items]
    bad = archives.mismatched_pairs(pairs, "gta5 sizes")
    for _, line in bad:
        print(f"warning: left out: {line}", file=sys.stderr, flush=True)
    if bad:
        print(
            f"warning: {len(bad)} of {len(items)} GTA5 pairs differ in size and are left out",
            file=sys.stderr,
            flush=True,
        )
    skip = {k for k, _ in bad}
    return [it for k, it in enumerate(items) if k not in skip]


def convert(item: Item) -> dict:
    """One example: the original PNG image, the label ids mapped to train ids (255: ignore)."""
    image_source = item.images.where(item.image)
    image, image_hw = archives.rgb_image(item.images.read(item.image), image_source)
    label_source = item.labels.where(item.label)
    ids = archives.read_index_mask(item.labels.read(item.label), label_source)
    archives.check_same_size(ids.shape, image_hw, label_source, image_source)
    return archives.example(item.id, image, ID_TO_TRAIN_ID[ids])


class Gta5(archives.SegmentationBuilder):
    """GTA5, 19 Cityscapes train ids: train (23,717) and a held-out validation (1,249)."""

    name = "cps_gta5"
    DESCRIPTION = (
        "GTA5 (Playing for Data) frames, labels mapped to the 19 Cityscapes train ids (255: "
        "ignore); a deterministic 1/20 held out for validation."
    )
    HOMEPAGE = HOMEPAGE
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        f"Download 01_images.zip .. {NUM_PARTS:02d}_images.zip and 01_labels.zip .. "
        f"{NUM_PARTS:02d}_labels.zip from {HOMEPAGE} into the manual dir (or extract them there "
        "into images/ and labels/)."
    )
    # TFDS would locate this file through `importlib_resources` (not a dependency here).
    code_path = epath.Path(os.path.abspath(__file__))

    def _split_generators(self, dl_manager):
        items = same_size_items(index(*open_inputs(os.fspath(dl_manager.manual_dir))))
        return {
            split: self._generate_examples(split_items, split)
            for split, split_items in splits(items).items()
        }

    def _generate_examples(self, items, split):
        for item in archives.progress(items, f"gta5 {split}"):
            yield item.id, convert(item)


def builder(data_dir: str) -> Gta5:
    return Gta5.at(data_dir)


def prepare(data_dir: str, manual_dir: str) -> Gta5:
    """The builder, written from the inputs in `manual_dir` unless already in `data_dir`."""
    return archives.prepare_from(builder(data_dir), manual_dir, find_inputs)


def sources(data_dir: str, manual_dir: str = "") -> dict:
    """{'train', 'validation'} random-access sources of {"image", "mask", "id"}."""
    b = prepare(data_dir, manual_dir)
    return {split: b.as_data_source(split=split) for split in ("train", "validation")}
