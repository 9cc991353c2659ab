"""Tiny inputs in the official layouts, with the arrays they hold, for the real data-set tests:

- Cityscapes: leftImg8bit_trainvaltest.zip + gtFine_trainvaltest.zip (3 cities, 2 images each);
- PASCAL VOC 2012: VOCtrainval_11-May-2012.tar (JPEGs, palette masks with 255 boundaries, lists);
- SBD: benchmark.tgz (cls/*.mat written with scipy.io.savemat) and a SegmentationClassAug folder;
- an image_folder tree; a data dir as TFDS's own `cityscapes` builder would have prepared it.
"""

import io
import json
import os
import tarfile
import zipfile

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
