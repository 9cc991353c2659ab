"""SYNTHIA-RAND-CITYSCAPES (Ros et al. 2016): a TFDS builder that needs no TensorFlow.

9,400 rendered street scenes, the usual second synthetic source of adaptation to Cityscapes. The
labels are SYNTHIA's 23 class ids (`SYNTHIA_CLASSES`); each is mapped to the Cityscapes train id of
the same class, as ADVENT and DAFormer map them (19 train ids; void, parking-slot, road-work and
lanemarking are ignored, 255). Class names and palette are Cityscapes' 19. The usual protocol
trains and evaluates on 16 of them: `config.data.classes = synthia.SYNTHIA_16` restricts a run to
those (terrain, truck and train then become ignored too).

Label files (`GT/LABELS/NNNNNNN.png`) are 16-bit PNGs of 3 channels: the class id is in the first
channel (R, in RGB order; the last one of OpenCV's BGR), the instance id in the second. Pillow
reads 16-bit colour as 8 bits (the high bytes: all zero here), so `label_ids` decodes both bytes
itself.

Inputs in the manual dir: the extracted `RAND_CITYSCAPES/` folder (with `RGB/` and `GT/LABELS/`), a
zip of it (`RAND_CITYSCAPES.zip`), or the manual dir may be that folder itself. The published
`SYNTHIA_RAND_CITYSCAPES.rar` is not read (no RAR reader here): extract it first. Example ids are
the file stems ('0000000').

SYNTHIA comes as one set; the builder holds out a deterministic 1/20 of it for validation
(ceil(n/20) images of the ids' sorted order, drawn with seed 0: 470 of 9,400) and trains on the
rest (8,930). An adaptation run validates on its target (Cityscapes) anyway.

  sources(data_dir, manual_dir)["train"][0]  # {"image" [H,W,3], "mask" [H,W,1], "id"}
"""

import collections
import io
import os
import re
import struct

import numpy as np
from etils import epath
from PIL import Image

from cps_jax.data import archives, cityscapes
from cps_jax.data.labels import IGNORE_LABEL, id_table

CLASS_NAMES = cityscapes.CLASS_NAMES
NUM_CLASSES = cityscapes.NUM_CLASSES  # 19
PALETTE = cityscapes.PALETTE

# SYNTHIA's class ids (the table of the data set's README) and the Cityscapes class of each; None:
# no Cityscapes class (ignored). Lane markings are part of the road in Cityscapes, but adaptation
# codebases (ADVENT, DAFormer, ...) ignore them, and so does this table: results stay comparable.
# fmt: off
SYNTHIA_CLASSES = (
    # id  SYNTHIA name       Cityscapes class
    (0,  "void",            None),
    (1,  "sky",             "sky"),
    (2,  "building",        "building"),
    (3,  "road",            "road"),
    (4,  "sidewalk",        "sidewalk"),
    (5,  "fence",           "fence"),
    (6,  "vegetation",      "vegetation"),
    (7,  "pole",            "pole"),
    (8,  "car",             "car"),
    (9,  "traffic sign",    "traffic_sign"),
    (10, "pedestrian",      "person"),
    (11, "bicycle",         "bicycle"),
    (12, "motorcycle",      "motorcycle"),
    (13, "parking-slot",    None),
    (14, "road-work",       None),
    (15, "traffic light",   "traffic_light"),
    (16, "terrain",         "terrain"),
    (17, "rider",           "rider"),
    (18, "truck",           "truck"),
    (19, "bus",             "bus"),
    (20, "train",           "train"),
    (21, "wall",            "wall"),
    (22, "lanemarking",     None),
)
# fmt: on
# SYNTHIA id -> Cityscapes train id; any other id (values up to 65535 read as such) is ignored.
ID_TO_TRAIN_ID = id_table(
    {i: CLASS_NAMES.index(name) for i, _, name in SYNTHIA_CLASSES if name is not None}
)
# The 16 classes of the SYNTHIA -> Cityscapes protocol (AdaptSegNet, ADVENT, DACS, ...), in
# Cityscapes order: for `config.data.classes`.
SYNTHIA_16 = tuple(n for n in CLASS_NAMES if n not in ("terrain", "truck", "train"))

NUM_IMAGES = 9400
VALIDATION_FRACTION, VALIDATION_SEED = "1/20", 0
NUM_TRAIN, NUM_VALIDATION = 8930, 470  # of NUM_IMAGES, by `archives.hold_out`
HOMEPAGE = "https://synthia-dataset.net"
FOLDER = "RAND_CITYSCAPES"
ZIPS = ("RAND_CITYSCAPES.zip", "SYNTHIA_RAND_CITYSCAPES.zip")
RAR = "SYNTHIA_RAND_CITYSCAPES.rar"
_IMAGE_RE = re.compile(r"(?:^|/)RGB/(\d+)\.png$")
_LABEL_RE = re.compile(r"(?:^|/)GT/LABELS/(\d+)\.png$")

Item = collections.namedtuple("Item", ["id", "image", "label"])  # id and the two member names


def find_input(manual_dir: str) -> str:
    """The RAND_CITYSCAPES folder (or `manual_dir` itself, if it is that folder) or its zip."""
    archives.require_dir(
        manual_dir,
        f"SYNTHIA manual_dir (the folder holding {FOLDER}/ or {ZIPS[0]})",
        archives.MANUAL_DIR_FLAG,
    )
    found = archives.find_input(manual_dir, [FOLDER, *ZIPS])
    if found is not None:
        return found
    if os.path.isdir(os.path.join(manual_dir, "RGB")) and os.path.isdir(
        os.path.join(manual_dir, "GT", "LABELS")
    ):
        return manual_dir
    rar = os.path.join(manual_dir, RAR)
    if os.path.exists(rar):
        raise archives.DataError(
            f"{rar}: RAR archives are not read; extract it first (e.g. `unrar x {RAR}` or "
            f"`7z x {RAR}` in {manual_dir}), so that {FOLDER}/ is there"
        )
    raise archives.DataError(
        f"{os.path.join(manual_dir, FOLDER)}: not found (nor {' or '.join(ZIPS)}); SYNTHIA needs "
        f"the extracted {FOLDER}/ folder of {RAR} (from {HOMEPAGE}) in {manual_dir}"
    )


def open_input(manual_dir: str) -> archives.Archive:
    return archives.Archive(find_input(manual_dir), "SYNTHIA-RAND-CITYSCAPES archive")


def index(archive: archives.Archive) -> list[Item]:
    """Every RGB/ image with its GT/LABELS/ label, sorted by id."""
    images, labels = {}, {}
    for name in archive.names():
        for pattern, found in ((_IMAGE_RE, images), (_LABEL_RE, labels)):
            m = pattern.search(name)
            if m and "__MACOSX" not in name:
                if m.group(1) in found:
                    raise archives.DataError(
                        f"{archive.where(name)}: {m.group(1)}.png is also "
                        f"{archive.where(found[m.group(1)])}"
                    )
                found[m.group(1)] = name
    if not images:
        raise archives.DataError(
            f"{archive.path}: no member RGB/NNNNNNN.png; is it SYNTHIA's {FOLDER}?"
        )
    items = []
    for ident in sorted(images, key=lambda i: (int(i), i)):
        if ident not in labels:
            raise archives.DataError(
                f"{archive.path}: missing GT/LABELS/{ident}.png, the label of "
                f"{archive.where(images[ident])}"
            )
        items.append(Item(ident, images[ident], labels[ident]))
    return items


def splits(items: list[Item], where: str) -> dict[str, list[Item]]:
    """{'train', 'validation'}: the deterministic 1/20 hold-out (see the module docstring)."""
    return archives.hold_out(items, VALIDATION_FRACTION, VALIDATION_SEED, where)


# ---------------------------------------------------------------------------------- label files
def _idat(data: bytes, source: str) -> bytes:
    """The concatenated IDAT chunks (the compressed pixel rows) of a PNG file."""
    pos, parts = len(archives.PNG_SIGNATURE), []
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        if kind == b"IDAT":
            parts.append(data[pos + 8 : pos + 8 + length])
        elif kind == b"IEND":
            break
        pos += 12 + length
    if not parts:
        raise archives.DataError(f"{source}: not a readable image: a PNG without pixel data")
    return b"".join(parts)


def _wide_channels(data: bytes, image: Image.Image, source: str) -> np.ndarray:
    """uint16 [H, W, C] of a 16-bit RGB or RGBA PNG: Pillow's PNG decoder run twice, unpacking
    the high bytes, then the low bytes of each value (it keeps only the high ones otherwise)."""
    idat, interlace = _idat(data, source), data[28]
    wide = f"{image.mode};16"  # 'RGB;16', 'RGBA;16'
    high, low = (
        np.asarray(Image.frombytes(image.mode, image.size, idat, "zip", (wide + end, interlace)))
        for end in ("B", "L")  # the big-endian values' first bytes, then (read as little) second
    )
    return (high.astype(np.uint16) << 8) | low


def label_ids(data: bytes, source: str) -> np.ndarray:
    """uint16 [H, W] SYNTHIA class ids of a label file: the first channel of a colour PNG (of 8 or
    16 bits; the others hold instance ids), or the values of a grey or palette one."""
    try:
        image = Image.open(io.BytesIO(data))
        depth = data[24] if image.format == "PNG" else 8
        if image.mode in ("RGB", "RGBA") and depth == 16:
            return _wide_channels(data, image, source)[..., 0]
        if image.mode in ("RGB", "RGBA"):
            return np.asarray(image)[..., 0].astype(np.uint16)
        if image.mode in ("L", "P", "I;16", "I;16B", "I;16L", "I"):
            return np.asarray(image).astype(np.uint16)
    except archives.DataError:
        raise
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        raise archives.DataError(f"{source}: not a readable image: {error}") from None
    raise archives.DataError(
        f"{source}: a SYNTHIA label must be a PNG of class ids (first channel), got mode "
        f"{image.mode}"
    )


def train_ids(ids: np.ndarray) -> np.ndarray:
    """uint8 train ids of SYNTHIA class ids (any value beyond the table: ignore)."""
    return ID_TO_TRAIN_ID[np.minimum(ids, IGNORE_LABEL)]


def convert(archive: archives.Archive, item: Item) -> dict:
    """One example: the original PNG image, the SYNTHIA ids mapped to train ids (255: ignore)."""
    image_source = archive.where(item.image)
    image, image_hw = archives.rgb_image(archive.read(item.image), image_source)
    label_source = archive.where(item.label)
    ids = label_ids(archive.read(item.label), label_source)
    archives.check_same_size(ids.shape, image_hw, label_source, image_source)
    return archives.example(item.id, image, train_ids(ids))


class SynthiaRandCityscapes(archives.SegmentationBuilder):
    """SYNTHIA-RAND-CITYSCAPES, 19 train ids: train (8,930) and a held-out validation (470)."""

    name = "cps_synthia"
    DESCRIPTION = (
        "SYNTHIA-RAND-CITYSCAPES, labels mapped to the 19 Cityscapes train ids (255: ignore); a "
        "deterministic 1/20 held out for validation."
    )
    HOMEPAGE = HOMEPAGE
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        f"Download {RAR} from {HOMEPAGE} and extract it into the manual dir ({FOLDER}/)."
    )
    # TFDS would locate this file through `importlib_resources` (not a dependency here).
    code_path = epath.Path(os.path.abspath(__file__))

    def _split_generators(self, dl_manager):
        archive = open_input(os.fspath(dl_manager.manual_dir))
        items = index(archive)
        archives.check_pair_sizes(
            [(archive, it.image, archive, it.label) for it in items],
            "synthia sizes",
            "Delete these images from RGB/ (or resize them to their labels) and prepare again.",
        )
        return {
            split: self._generate_examples(archive, split_items, split)
            for split, split_items in splits(items, archive.path).items()
        }

    def _generate_examples(self, archive, items, split):
        for item in archives.progress(items, f"synthia {split}"):
            yield item.id, convert(archive, item)


def builder(data_dir: str) -> SynthiaRandCityscapes:
    return SynthiaRandCityscapes.at(data_dir)


def prepare(data_dir: str, manual_dir: str) -> SynthiaRandCityscapes:
    """The builder, written from the input in `manual_dir` unless already in `data_dir`."""
    return archives.prepare_from(builder(data_dir), manual_dir, find_input)


def sources(data_dir: str, manual_dir: str = "") -> dict:
    """{'train', 'validation'} random-access sources of {"image", "mask", "id"}."""
    b = prepare(data_dir, manual_dir)
    return {split: b.as_data_source(split=split) for split in ("train", "validation")}
