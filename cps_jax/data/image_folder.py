"""`image_folder`: a user's own segmentation data set, from a folder of images and masks.

  FOLDER/classes.json      {"classes": [{"name": "road", "color": [128, 64, 128]}, ...],
                            "ignore_index": 255}          (ignore_index optional, default 255)
  FOLDER/images/<stem>.jpg|png|...   any size, any common format
  FOLDER/masks/<stem>.png            class indices (grey or palette PNG), same size as the image
  FOLDER/unlabeled/<stem>.jpg|...    optional: images without masks, unlabeled data only
  FOLDER/val/images/, val/masks/     optional: the validation split; without it a deterministic
                                     `val_fraction` of images/ is held out (seed `val_seed`)
  FOLDER/tags.json                   optional: image-level labels of images without masks,
                                     {"<stem>": ["road", "car", ...]} (class names of
                                     classes.json); a tagged unlabeled/ image is image-labeled

Stems may contain sub-folders ('city1/0001'); the stem is the example id. Mask value k is the
k-th class of classes.json, `ignore_index` is stored as 255 (ignored in loss and metrics).
The build lives in `data_dir/cps_image_folder/<folder name>_<fingerprint>/`: the fingerprint
covers the file names, sizes, classes.json and the split settings, so an edited folder is rebuilt.
"""

import dataclasses
import difflib
import hashlib
import json
import os
import re

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

from cps_jax.data import archives, partitions
from cps_jax.data.labels import IGNORE_LABEL

CLASS_FILE = "classes.json"
TAGS_FILE = "tags.json"
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
MASK_EXTENSIONS = (".png", ".bmp", ".tif", ".tiff")  # lossless only: a JPEG mask corrupts labels


@dataclasses.dataclass(frozen=True)
class ClassSpec:
    names: tuple
    palette: np.ndarray  # [C, 3] uint8
    ignore_index: int


# The keys classes.json and each of its classes may have: a misspelt one must not be ignored.
_FILE_KEYS = ("classes", "ignore_index")
_CLASS_KEYS = ("name", "color")


def _check_keys(entry: dict, allowed, where: str) -> None:
    unknown = [key for key in entry if key not in allowed]
    if unknown:
        close = difflib.get_close_matches(str(unknown[0]), allowed, n=1)
        hint = f'did you mean "{close[0]}"?' if close else "expected " + ", ".join(allowed)
        raise archives.DataError(f'{where}: unknown key "{unknown[0]}" ({hint})')


def read_class_file(path: str) -> ClassSpec:
    """Class names, colours and the ignore value; DataError naming the file and field if malformed."""
    try:
        with open(path, encoding="utf-8") as f:
            spec = json.load(f)
    except FileNotFoundError:
        raise archives.DataError(
            f"{path}: class file not found (expected JSON: "
            '{"classes": [{"name": ..., "color": [r, g, b]}, ...], "ignore_index": 255})'
        ) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise archives.DataError(f"{path}: not valid JSON: {error}") from None
    classes = spec.get("classes") if isinstance(spec, dict) else None
    if not isinstance(classes, list) or not classes:
        raise archives.DataError(
            f'{path}: "classes" must be a non-empty list of {{"name", "color"}}'
        )
    _check_keys(spec, _FILE_KEYS, path)
    names, colors = [], []
    for k, c in enumerate(classes):
        field = f'{path}: "classes"[{k}]'
        if not isinstance(c, dict) or not isinstance(c.get("name"), str) or not c["name"]:
            raise archives.DataError(f'{field} needs a non-empty string "name"')
        _check_keys(c, _CLASS_KEYS, f'{field} ("{c["name"]}")')
        color = c.get("color")
        if not (
            isinstance(color, list)
            and len(color) == 3
            and all(isinstance(v, int) and 0 <= v <= 255 for v in color)
        ):
            raise archives.DataError(
                f'{field} ("{c["name"]}"): "color" must be [r, g, b] in 0..255'
            )
        names.append(c["name"])
        colors.append(color)
    if len(set(names)) != len(names):
        raise archives.DataError(f"{path}: class names must be unique, got {names}")
    ignore = spec.get("ignore_index", IGNORE_LABEL)
    if not isinstance(ignore, int) or not len(names) <= ignore <= 255:
        raise archives.DataError(
            f'{path}: "ignore_index" must be an integer in {len(names)}..255 (not a class index), '
            f"got {ignore!r}"
        )
    return ClassSpec(tuple(names), np.array(colors, np.uint8), ignore)


def read_tags_file(path: str, class_names, stems) -> dict[str, np.ndarray]:
    """{stem: multi-hot uint8 [C]} from a tags file ({stem: [class name, ...]}); DataError naming
    the file and the stem for an unknown class or an image the folder does not have."""
    try:
        with open(path, encoding="utf-8") as f:
            tags = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise archives.DataError(f"{path}: not valid JSON: {error}") from None
    if not isinstance(tags, dict):
        raise archives.DataError(f'{path}: expected {{"<image stem>": [class names]}}')
    index = {name: k for k, name in enumerate(class_names)}
    known = set(stems)
    out = {}
    for stem, names in tags.items():
        if stem not in known:
            close = difflib.get_close_matches(stem, known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise archives.DataError(f"{path}: {stem!r}: no image of the folder has this stem{hint}")
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise archives.DataError(f"{path}: {stem!r}: expected a list of class names")
        unknown = [n for n in names if n not in index]
        if unknown:
            raise archives.DataError(
                f"{path}: {stem!r}: unknown class {unknown[0]!r} (the classes of {CLASS_FILE}: "
                f"{', '.join(class_names)})"
            )
        vector = np.zeros(len(class_names), np.uint8)
        vector[[index[n] for n in names]] = 1
        out[stem] = vector
    return out


def tags(folder: str, spec: ClassSpec, layout: "Layout") -> dict[str, np.ndarray]:
    """The folder's image-level labels ({} without a tags file)."""
    path = os.path.join(folder, TAGS_FILE)
    if not os.path.exists(path):
        return {}
    stems = [ident for split in (layout.train, layout.validation, layout.unlabeled) for ident, *_ in split]
    return read_tags_file(path, spec.names, stems)


def _files(folder: str, extensions, what: str) -> dict[str, str]:
    """{stem: path} of the files under `folder` (recursively), stem = relative path, no extension."""
    out = {}
    for root, _, files in os.walk(folder):
        for f in sorted(files):
            stem, ext = os.path.splitext(f)
            if ext.lower() not in extensions:
                continue
            rel = os.path.relpath(os.path.join(root, stem), folder).replace(os.sep, "/")
            if rel in out:
                raise archives.DataError(
                    f"{os.path.join(root, f)}: two {what} files share the stem {rel!r} "
                    f"({os.path.basename(out[rel])} and {f})"
                )
            out[rel] = os.path.join(root, f)
    return out


def _pairs(images_dir: str, masks_dir: str) -> list[tuple[str, str, str]]:
    """Sorted (id, image path, mask path); every image needs a mask and every mask an image."""
    for d in (images_dir, masks_dir):
        archives.require_dir(d, "image_folder sub-folder")
    images = _files(images_dir, IMAGE_EXTENSIONS, "image")
    masks = _files(masks_dir, MASK_EXTENSIONS, "mask")
    if not images:
        raise archives.DataError(f"{images_dir}: no images ({', '.join(IMAGE_EXTENSIONS)})")
    no_mask, no_image = sorted(set(images) - set(masks)), sorted(set(masks) - set(images))
    if no_mask:
        stem = no_mask[0]
        lossy = [e for e in (".jpg", ".jpeg") if os.path.exists(os.path.join(masks_dir, stem + e))]
        raise archives.DataError(
            f"{images[stem]}: no mask {os.path.join(masks_dir, stem)}.png for this image"
            + (f" (nor for {len(no_mask) - 1} more)" if len(no_mask) > 1 else "")
            + (f"; {stem}{lossy[0]} is not used: JPEG would corrupt the labels" if lossy else "")
        )
    if no_image:
        stem = no_image[0]
        raise archives.DataError(f"{masks[stem]}: no image {stem}.* in {images_dir} for this mask")
    return [(s, images[s], masks[s]) for s in sorted(images)]


@dataclasses.dataclass
class Layout:
    train: list  # [(id, image path, mask path or None)]
    validation: list
    unlabeled: list


def scan(folder: str, val_fraction, val_seed: int) -> Layout:
    """The examples of each split, from the folder layout (see the module docstring)."""
    archives.require_dir(folder, "image_folder folder")
    labeled = _pairs(os.path.join(folder, "images"), os.path.join(folder, "masks"))
    val_dir = os.path.join(folder, "val")
    if os.path.isdir(val_dir):
        train = labeled
        validation = _pairs(os.path.join(val_dir, "images"), os.path.join(val_dir, "masks"))
    else:
        try:
            held_out, kept = partitions.split_labeled(len(labeled), val_fraction, val_seed)
        except ValueError as error:
            raise archives.DataError(f"config.data.val_fraction: {error}") from None
        if not len(kept):
            raise archives.DataError(
                f"{folder}: val_fraction {val_fraction} leaves no training image of {len(labeled)}"
            )
        train = [labeled[i] for i in kept]
        validation = [labeled[i] for i in held_out]
    unlabeled_dir = os.path.join(folder, "unlabeled")
    unlabeled = []
    if os.path.isdir(unlabeled_dir):
        found = _files(unlabeled_dir, IMAGE_EXTENSIONS, "image")
        unlabeled = [(s, found[s], None) for s in sorted(found)]
    return Layout(train, validation, unlabeled)


def convert_mask(mask: np.ndarray, spec: ClassSpec, source: str) -> np.ndarray:
    """Stored mask: class indices as they are, `ignore_index` -> 255; anything else is an error."""
    mask = np.where(mask == spec.ignore_index, IGNORE_LABEL, mask).astype(np.uint8)
    archives.check_mask_values(mask, len(spec.names), source)
    return mask


def convert(ident: str, image_path: str, mask_path: str | None, spec: ClassSpec) -> dict:
    with open(image_path, "rb") as f:
        image, image_hw = archives.rgb_image(f.read(), image_path)
    if mask_path is None:  # an unlabeled image: every pixel ignored
        return archives.example(ident, image, np.full(image_hw, IGNORE_LABEL, np.uint8))
    with open(mask_path, "rb") as f:
        mask = archives.read_index_mask(f.read(), mask_path)
    archives.check_same_size(mask.shape, image_hw, mask_path, image_path)
    return archives.example(ident, image, convert_mask(mask, spec, mask_path))


def fingerprint(folder: str, val_fraction, val_seed: int) -> str:
    """Hash of what the build depends on: file names and sizes, classes.json, the split settings."""
    h = hashlib.sha256(f"{partitions.parse_fraction(val_fraction)!r} {int(val_seed)}".encode())
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        for f in sorted(files):
            path = os.path.join(root, f)
            rel = os.path.relpath(path, folder).replace(os.sep, "/")
            h.update(f"{rel}\0{os.path.getsize(path)}\0".encode())
    with open(os.path.join(folder, CLASS_FILE), "rb") as f:
        h.update(f.read())
    return h.hexdigest()[:12]


class ImageFolderConfig(tfds.core.BuilderConfig):
    def __init__(self, *, folder: str, val_fraction, val_seed: int):
        folder = os.path.abspath(folder)
        slug = re.sub(r"[^A-Za-z0-9]+", "_", os.path.basename(folder)).strip("_") or "folder"
        super().__init__(
            name=f"{slug}_{fingerprint(folder, val_fraction, val_seed)}",
            description=f"{folder}, val_fraction {val_fraction}, val_seed {val_seed}",
        )
        self.folder, self.val_fraction, self.val_seed = folder, val_fraction, int(val_seed)


class ImageFolder(archives.SegmentationBuilder):
    """A user's folder of images and masks: train, validation and (optional) unlabeled splits."""

    name = "cps_image_folder"
    DESCRIPTION = "A folder of images and index masks (cps_jax image_folder)."
    MANUAL_DOWNLOAD_INSTRUCTIONS = "The manual dir is the data-set folder (see image_folder.py)."
    # TFDS would locate this file through `importlib_resources` (not a dependency here).
    code_path = epath.Path(os.path.abspath(__file__))

    def _split_generators(self, dl_manager):
        del dl_manager  # the folder is in the config
        c = self.builder_config
        spec = read_class_file(os.path.join(c.folder, CLASS_FILE))
        layout = scan(c.folder, c.val_fraction, c.val_seed)
        splits = {"train": layout.train, "validation": layout.validation}
        if layout.unlabeled:
            splits["unlabeled"] = layout.unlabeled
        return {s: self._generate_examples(items, spec, s) for s, items in splits.items()}

    def _generate_examples(self, items, spec, split):
        for ident, image_path, mask_path in archives.progress(items, f"image_folder {split}"):
            yield ident, convert(ident, image_path, mask_path, spec)


# val_fraction and val_seed: the fields of config.data (defaults: datasets.IMAGE_FOLDER_DEFAULTS).
def prepare(data_dir: str, folder: str, val_fraction, val_seed: int) -> ImageFolder:
    """The builder of `folder`, written into `data_dir` unless already there."""
    archives.require_dir(folder, "image_folder folder", "config.data.folder or --folder")
    read_class_file(os.path.join(folder, CLASS_FILE))  # fail early, naming the file
    try:
        partitions.parse_fraction(val_fraction)
    except ValueError as error:
        raise archives.DataError(f"config.data.val_fraction: {error}") from None
    config = ImageFolderConfig(folder=folder, val_fraction=val_fraction, val_seed=val_seed)
    b = ImageFolder.at(data_dir, config=config)
    return archives.download_and_prepare(b, folder)


def sources(data_dir: str, folder: str, val_fraction, val_seed: int) -> dict:
    """{'train', 'validation'[, 'unlabeled']} random-access sources of {"image", "mask", "id"}."""
    b = prepare(data_dir, folder, val_fraction, val_seed)
    return {split: b.as_data_source(split=split) for split in b.info.splits}
