"""Tiny inputs in the official layouts, with the arrays they hold, for the real data-set tests:

- Cityscapes: leftImg8bit_trainvaltest.zip + gtFine_trainvaltest.zip (3 cities, 2 images each);
- PASCAL VOC 2012: VOCtrainval_11-May-2012.tar (JPEGs, palette masks with 255 boundaries, lists);
- SBD: benchmark.tgz (cls/*.mat written with scipy.io.savemat) and a SegmentationClassAug folder;
- an image_folder tree; a data dir as TFDS's own `cityscapes` builder would have prepared it;
- GTA5: NN_images.zip + NN_labels.zip parts, or the extracted images/ and labels/ folders;
- SYNTHIA-RAND-CITYSCAPES: the RAND_CITYSCAPES folder (16-bit RGB label PNGs) or a zip of it.
"""

import io
import json
import os
import struct
import tarfile
import zipfile
import zlib

import numpy as np
import scipy.io
import tensorflow_datasets as tfds
from etils import epath
from PIL import Image

# ------------------------------------------------------------------------------------- helpers


def encode(array: np.ndarray, fmt: str = "PNG", **kwargs) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def palette_png(indices: np.ndarray, palette: np.ndarray) -> bytes:
    """A mode-'P' PNG: pixel values are `indices`, shown with `palette` ([256, 3])."""
    image = Image.fromarray(indices.astype(np.uint8), mode="L")
    image = image.convert("P")  # keeps the values as palette indices
    image.putpalette(palette.astype(np.uint8).ravel().tolist())
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def decode(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image)


def write_zip(path: str, members: dict) -> str:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return path


def write_tar(path: str, members: dict, mode: str = "w") -> str:
    with tarfile.open(path, mode) as t:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return path


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def _png_filter(row: np.ndarray, prior: np.ndarray, kind: int, bpp: int) -> np.ndarray:
    """One scanline filtered with PNG filter `kind` (0 none, 1 sub, 2 up, 3 average, 4 Paeth)."""
    raw, up = row.astype(np.int32), prior.astype(np.int32)
    left = np.concatenate([np.zeros(bpp, np.int32), raw[:-bpp]])
    up_left = np.concatenate([np.zeros(bpp, np.int32), up[:-bpp]])
    if kind == 4:
        p = left + up - up_left
        pa, pb, pc = abs(p - left), abs(p - up), abs(p - up_left)
        predict = np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, up, up_left))
    else:
        predict = [0, left, up, (left + up) // 2][kind]
    return ((raw - predict) % 256).astype(np.uint8)


# Adam7 passes: (first row, first column, row step, column step).
_ADAM7 = (
    (0, 0, 8, 8), (0, 4, 8, 8), (4, 0, 8, 4), (0, 2, 4, 4), (2, 0, 4, 2), (0, 1, 2, 2), (1, 0, 2, 1)
)  # fmt: skip


def png16(array: np.ndarray, *, interlace: bool = False) -> bytes:
    """A 16-bit RGB (or RGBA) PNG of uint16 [H, W, 3 or 4], written by hand (Pillow writes no
    16-bit colour): every filter type occurs (row k uses filter k % 5), Adam7 if `interlace`."""
    h, w, c = array.shape
    passes = _ADAM7 if interlace else ((0, 0, 1, 1),)
    raw, k = b"", 0
    for y0, x0, dy, dx in passes:
        sub = array[y0::dy, x0::dx]
        if not sub.size:
            continue
        rows = sub.astype(">u2").reshape(sub.shape[0], -1).view(np.uint8)
        prior = np.zeros(rows.shape[1], np.uint8)
        for row in rows:
            raw += bytes([k % 5]) + _png_filter(row, prior, k % 5, 2 * c).tobytes()
            prior, k = row, k + 1
    header = struct.pack(">IIBBBBB", w, h, 16, {3: 2, 4: 6}[c], 0, 0, int(interlace))
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", zlib.compress(raw))
        + _png_chunk(b"IEND", b"")
    )


def write_files(root: str, members: dict) -> str:
    """`members` ({relative path: bytes}) written as files under `root`."""
    for name, data in members.items():
        path = os.path.join(root, *name.split("/"))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)
    return root


def random_image(rng, h: int, w: int) -> np.ndarray:
    # Smooth gradients plus noise: JPEG-friendly, yet every pixel matters for exact comparisons.
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([yy * 7, xx * 5, (yy + xx) * 3], -1) + rng.integers(0, 40, (h, w, 3))
    return (base % 256).astype(np.uint8)


# ---------------------------------------------------------------------------------- Cityscapes
CITIES = {"train": {"aachen": 2, "bochum": 2}, "val": {"frankfurt": 2}}


def cityscapes_stem(city: str, k: int) -> str:
    return f"{city}_{k:06d}_{19 + k:06d}"


def cityscapes(manual_dir: str, seed: int = 0) -> dict:
    """Writes both zips; returns {split: {id: (image [H,W,3], label ids [H,W])}} (split
    'train' / 'validation'). Image sizes differ; every label id 0..33 occurs."""
    rng = np.random.default_rng(seed)
    images, labels = {"README": b"fake", "license.txt": b"fake"}, {"README": b"fake"}
    out = {"train": {}, "validation": {}}
    n = 0
    for split_dir, cities in CITIES.items():
        for city, count in cities.items():
            for k in range(count):
                h, w = 10 + n, 16 + 2 * n
                image = random_image(rng, h, w)
                ids = rng.integers(0, 34, (h, w)).astype(np.uint8)
                ids.flat[:34] = np.arange(34)
                stem = cityscapes_stem(city, k)
                images[f"leftImg8bit/{split_dir}/{city}/{stem}_leftImg8bit.png"] = encode(image)
                gt = f"gtFine/{split_dir}/{city}/{stem}_gtFine"
                labels[f"{gt}_labelIds.png"] = encode(ids)
                labels[f"{gt}_color.png"] = encode(image)  # distractors
                labels[f"{gt}_polygons.json"] = b"{}"
                out["train" if split_dir == "train" else "validation"][f"{city}/{stem}"] = (
                    image,
                    ids,
                )
                n += 1
    # The test split (no public labels) is not part of the data set.
    images["leftImg8bit/test/berlin/berlin_000000_000019_leftImg8bit.png"] = encode(
        random_image(rng, 8, 8)
    )
    write_zip(os.path.join(manual_dir, "leftImg8bit_trainvaltest.zip"), images)
    write_zip(os.path.join(manual_dir, "gtFine_trainvaltest.zip"), labels)
    return out


def tfds_cityscapes(data_dir: str, examples: dict) -> str:
    """Writes `examples` ({split: {id: (image, label ids)}}) as TFDS's own
    `cityscapes/semantic_segmentation` builder stores them (array_record); returns its folder."""

    class Cityscapes(tfds.core.GeneratorBasedBuilder, skip_registration=True):
        name = "cityscapes"
        VERSION = tfds.core.Version("1.0.0")
        BUILDER_CONFIGS = [tfds.core.BuilderConfig(name="semantic_segmentation")]
        code_path = epath.Path(os.path.abspath(__file__))

        def _info(self):
            return tfds.core.DatasetInfo(
                builder=self,
                features=tfds.features.FeaturesDict(
                    {
                        "image_id": tfds.features.Text(),
                        "image_left": tfds.features.Image(
                            shape=(None, None, 3), encoding_format="png"
                        ),
                        "segmentation_label": tfds.features.Image(
                            shape=(None, None, 1), encoding_format="png", use_colormap=True
                        ),
                    }
                ),
            )

        def _split_generators(self, dl_manager):
            return {split: self._generate_examples(split) for split in examples}

        def _generate_examples(self, split):
            for ident, (image, ids) in examples[split].items():
                stem = ident.split("/")[1]  # TFDS's ids have no city folder
                yield (
                    stem,
                    {
                        "image_id": stem,
                        "image_left": encode(image),
                        "segmentation_label": encode(ids),
                    },
                )

    b = Cityscapes(data_dir=data_dir, file_format="array_record")
    b.download_and_prepare(download_config=tfds.download.DownloadConfig())
    return os.fspath(b.data_path)


# ------------------------------------------------------------------------------ VOC, SBD, Aug
VOC_TRAIN = ["2007_000032", "2007_000039", "2008_000002"]
VOC_VAL = ["2007_000033", "2008_000003"]
SBD_TRAIN = ["2007_000039", "2008_000004", "2008_000005", "2007_000033"]  # 2007_000033: VOC val
SBD_VAL = ["2008_000006", "2008_000007"]
EXTRA_JPEGS = ["2009_000001"]  # in JPEGImages, in no list
# (VOC train ∪ SBD train ∪ SBD val) minus VOC val, by hand:
TRAIN_AUG = [
    "2007_000032",
    "2007_000039",
    "2008_000002",
    "2008_000004",
    "2008_000005",
    "2008_000006",
    "2008_000007",
]


def voc_palette() -> np.ndarray:
    """[256, 3]: any palette does for the test; the PNG stores indices."""
    return np.random.default_rng(1).integers(0, 256, (256, 3)).astype(np.uint8)


def voc(manual_dir: str, seed: int = 0, *, sbd: bool = True, aug: bool = False) -> dict:
    """Writes VOCtrainval_11-May-2012.tar, and benchmark.tgz (sbd) and/or a SegmentationClassAug
    folder (aug). Returns {"jpeg": {id: bytes}, "voc": {id: mask}, "sbd": {id: mask},
    "aug": {id: mask}} (masks [H, W] uint8; VOC's have 255 boundaries, SBD's and Aug's differ
    from VOC's where both exist, so a test sees which one was used)."""
    rng = np.random.default_rng(seed)
    all_ids = sorted(set(VOC_TRAIN + VOC_VAL + SBD_TRAIN + SBD_VAL + EXTRA_JPEGS))
    root = "VOCdevkit/VOC2012/"
    members, out = {}, {"jpeg": {}, "voc": {}, "sbd": {}, "aug": {}}
    sizes = {}
    for n, i in enumerate(all_ids):
        h, w = 12 + n, 20 + n
        sizes[i] = (h, w)
        jpeg = encode(random_image(rng, h, w), "JPEG", quality=90)
        members[f"{root}JPEGImages/{i}.jpg"] = out["jpeg"][i] = jpeg

    def mask(i, boundary):
        m = rng.integers(0, 21, sizes[i]).astype(np.uint8)
        m.flat[:21] = np.arange(21)
        if boundary:
            m[0, :] = 255  # a boundary row
        return m

    for i in VOC_TRAIN + VOC_VAL:
        out["voc"][i] = mask(i, boundary=True)
        members[f"{root}SegmentationClass/{i}.png"] = palette_png(out["voc"][i], voc_palette())
    for s, ids in (("train", VOC_TRAIN), ("val", VOC_VAL), ("trainval", VOC_TRAIN + VOC_VAL)):
        members[f"{root}ImageSets/Segmentation/{s}.txt"] = ("\n".join(ids) + "\n").encode()
    members[f"{root}Annotations/{all_ids[0]}.xml"] = b"<annotation/>"
    write_tar(os.path.join(manual_dir, "VOCtrainval_11-May-2012.tar"), members)

    if sbd:
        sbd_members = {}
        for i in SBD_TRAIN + SBD_VAL:
            out["sbd"][i] = mask(i, boundary=False)
            buf = io.BytesIO()
            gt = {
                "Segmentation": out["sbd"][i],
                "Boundaries": np.zeros((20, 1), object),
                "CategoriesPresent": np.unique(out["sbd"][i]).astype(np.uint8),
            }
            scipy.io.savemat(buf, {"GTcls": gt})
            sbd_members[f"benchmark_RELEASE/dataset/cls/{i}.mat"] = buf.getvalue()
            sbd_members[f"benchmark_RELEASE/dataset/img/{i}.jpg"] = out["jpeg"][i]
        sbd_members["benchmark_RELEASE/dataset/train.txt"] = ("\n".join(SBD_TRAIN) + "\n").encode()
        sbd_members["benchmark_RELEASE/dataset/val.txt"] = ("\n".join(SBD_VAL) + "\n").encode()
        write_tar(os.path.join(manual_dir, "benchmark.tgz"), sbd_members, "w:gz")
    if aug:
        folder = os.path.join(manual_dir, "SegmentationClassAug")
        os.makedirs(folder, exist_ok=True)
        for i in TRAIN_AUG + VOC_VAL:
            out["aug"][i] = mask(i, boundary=False)
            with open(os.path.join(folder, f"{i}.png"), "wb") as f:
                f.write(encode(out["aug"][i]))
    return out


# -------------------------------------------------------------------------------- image_folder
CLASSES = {
    "classes": [
        {"name": "background", "color": [0, 0, 0]},
        {"name": "crack", "color": [255, 0, 0]},
        {"name": "stain", "color": [0, 0, 255]},
    ],
    "ignore_index": 9,
}


def image_folder(folder: str, seed: int = 0, *, num_images: int = 5, val: bool = False) -> dict:
    """Writes an image_folder tree: classes.json (3 classes, ignore 9), images/ in PNG, JPEG and
    grey PNG, one in a sub-folder, masks/ (grey and palette PNG), unlabeled/ (2 images), and
    val/ if `val`. Returns {"images": {id: RGB array as stored}, "masks": {id: mask as written},
    "unlabeled": {id: RGB array}, "val": {...}}."""
    rng = np.random.default_rng(seed)
    out = {"images": {}, "masks": {}, "unlabeled": {}, "val_images": {}, "val_masks": {}}
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "classes.json"), "w") as f:
        json.dump(CLASSES, f)

    def put(sub, ident, array, fmt="PNG", ext=".png", **kw):
        path = os.path.join(folder, sub, ident + ext)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        data = encode(array, fmt, **kw)
        with open(path, "wb") as f:
            f.write(data)
        return data

    def labeled(images_sub, masks_sub, ids, images_out, masks_out):
        for n, ident in enumerate(ids):
            h, w = 9 + n, 14 + 3 * n
            image = random_image(rng, h, w)
            if n % 3 == 1:  # JPEG: the stored image is the decoded JPEG
                images_out[ident] = decode(put(images_sub, ident, image, "JPEG", ".jpg"))
            elif n % 3 == 2:  # grey: stored as RGB
                grey = image[..., 0]
                put(images_sub, ident, grey)
                images_out[ident] = np.repeat(grey[..., None], 3, -1)
            else:
                put(images_sub, ident, image)
                images_out[ident] = image
            m = rng.choice(np.array([0, 1, 2, 9], np.uint8), (h, w))
            if n % 2:
                path = os.path.join(folder, masks_sub, ident + ".png")
                os.makedirs(os.path.dirname(path), exist_ok=True)
                with open(path, "wb") as f:
                    f.write(palette_png(m, voc_palette()))
            else:
                put(masks_sub, ident, m)
            masks_out[ident] = m

    ids = [f"img_{k:02d}" for k in range(num_images - 1)] + ["site_b/img_00"]
    labeled("images", "masks", ids, out["images"], out["masks"])
    for k in range(2):
        image = random_image(rng, 11, 13 + k)
        put("unlabeled", f"u_{k}", image)
        out["unlabeled"][f"u_{k}"] = image
    if val:
        labeled("val/images", "val/masks", ["v_0", "v_1"], out["val_images"], out["val_masks"])
    return out


# ----------------------------------------------------------------------------------------- GTA5
# Two parts of two images each; ids as in the published set (five digits, from 00001).
GTA5_PARTS = {"01": ["00001", "00002"], "02": ["00003", "00010"]}
GTA5_IDS = [i for ids in GTA5_PARTS.values() for i in ids]


def gta5(manual_dir: str, seed: int = 0, *, layout: str = "zip") -> dict:
    """Writes GTA5: layout 'zip' (01_images.zip, 01_labels.zip, 02_images.zip, 02_labels.zip,
    members images/NNNNN.png and labels/NNNNN.png) or 'folder' (images/, labels/). The same seed
    gives the same pixels in both. Returns {id: (image [H,W,3], label ids [H,W])}: label ids
    0..35 and 255 occur (34, 35 and 255 are no Cityscapes class); labels are palette PNGs, as
    published, except one grey PNG."""
    rng = np.random.default_rng(seed)
    out, members = {}, {}
    for n, ident in enumerate(GTA5_IDS):
        h, w = 24 + n, 32 - n
        image = random_image(rng, h, w)
        ids = rng.integers(0, 36, (h, w)).astype(np.uint8)
        ids.flat[:37] = [*range(36), 255]
        label = encode(ids) if n == 2 else palette_png(ids, voc_palette())
        members[ident] = (encode(image), label)
        out[ident] = (image, ids)
    if layout == "folder":
        for ident, (image, label) in members.items():
            write_files(manual_dir, {f"images/{ident}.png": image, f"labels/{ident}.png": label})
        return out
    for part, ids in GTA5_PARTS.items():
        write_zip(
            os.path.join(manual_dir, f"{part}_images.zip"),
            {f"images/{i}.png": members[i][0] for i in ids},
        )
        write_zip(
            os.path.join(manual_dir, f"{part}_labels.zip"),
            {f"labels/{i}.png": members[i][1] for i in ids},
        )
    return out


# --------------------------------------------------------------------------------------- SYNTHIA
SYNTHIA_IDS = ["0000000", "0000001", "0000002", "0000003"]


def synthia_files(seed: int = 0) -> tuple[dict, dict]:
    """({member under RAND_CITYSCAPES/: bytes}, {id: (image [H,W,3], class ids [H,W] uint16)}).

    Labels are 16-bit RGB PNGs as published: class ids in R (all of 0..22, and ids beyond the
    table: 23, 40, 255, 256 (whose low byte is 0, void) and 1027 (low byte 3, road)), instance
    ids in G (up to 3000), 0 in B; the last one is interlaced. A GT/COLOR/ distractor too."""
    rng = np.random.default_rng(seed)
    members, out = {}, {}
    for n, ident in enumerate(SYNTHIA_IDS):
        h, w = 24 + n, 32 + n
        image = random_image(rng, h, w)
        ids = rng.integers(0, 23, (h, w)).astype(np.uint16)
        ids.flat[:28] = [*range(23), 23, 40, 255, 256, 1027]
        instances = rng.integers(0, 3001, (h, w)).astype(np.uint16)
        label = np.stack([ids, instances, np.zeros_like(ids)], -1)
        members[f"RGB/{ident}.png"] = encode(image)
        members[f"GT/LABELS/{ident}.png"] = png16(label, interlace=n == 3)
        members[f"GT/COLOR/{ident}.png"] = encode(image[::-1])
        out[ident] = (image, ids)
    return members, out


def synthia(manual_dir: str, seed: int = 0, *, layout: str = "folder") -> dict:
    """Writes SYNTHIA-RAND-CITYSCAPES: layout 'folder' (RAND_CITYSCAPES/RGB/, GT/LABELS/, ...)
    or 'zip' (RAND_CITYSCAPES.zip of that folder). Returns `synthia_files`'s arrays."""
    members, out = synthia_files(seed)
    if layout == "folder":
        write_files(os.path.join(manual_dir, "RAND_CITYSCAPES"), members)
    else:
        zipped = {f"RAND_CITYSCAPES/{name}": data for name, data in members.items()}
        write_zip(os.path.join(manual_dir, "RAND_CITYSCAPES.zip"), zipped)
    return out
