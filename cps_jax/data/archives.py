"""What the real data-set builders share: archive access, image and mask encoding, TFDS plumbing.

Archives are read in place (zip, tar of any compression, or an extracted folder), member by member,
never extracted to disk. Every problem with an input file is a `DataError` whose message names the
file (and the member inside an archive) and what was expected.
"""

import io
import os
import struct
import tarfile
import zipfile
import zlib
from typing import Iterable

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image
from tqdm import tqdm

from cps_jax.data import partitions
from cps_jax.data.labels import IGNORE_LABEL
from cps_jax.data.png import png_bytes

MANUAL_DIR_FLAG = "config.data.manual_dir or --manual_dir"

# Errors that a damaged zip / tar / gzip / bzip2 / xz stream raises while being read.
_READ_ERRORS = (tarfile.TarError, zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError)


class DataError(ValueError):
    """A missing, corrupt or malformed input file; the message names it."""


class Archive:
    """Random access to the files of a zip, a tar (any compression) or a folder, by relative path.

    Member names use '/' and are relative to the archive root (or to the folder).
    """

    def __init__(self, path: str, what: str = "archive"):
        self.path = os.fspath(path)
        self._zip = self._tar = None
        self._members = {}
        if not os.path.exists(self.path):
            raise DataError(f"{self.path}: {what} not found")
        try:
            if os.path.isdir(self.path):
                for root, _, files in os.walk(self.path):
                    rel = os.path.relpath(root, self.path).replace(os.sep, "/")
                    for f in files:
                        name = f if rel == "." else f"{rel}/{f}"
                        self._members[name] = os.path.join(root, f)
            elif zipfile.is_zipfile(self.path):
                self._zip = zipfile.ZipFile(self.path)
                self._members = {i.filename: i for i in self._zip.infolist() if not i.is_dir()}
            else:
                self._tar = tarfile.open(self.path, "r:*")
                self._members = {m.name: m for m in self._tar.getmembers() if m.isfile()}
        except _READ_ERRORS as error:
            raise DataError(
                f"{self.path}: not a readable {what} (expected a zip or tar file): {error}"
            ) from None

    def names(self) -> list[str]:
        return list(self._members)

    def __contains__(self, name: str) -> bool:
        return name in self._members

    def read(self, name: str) -> bytes:
        """The bytes of member `name`; DataError naming the archive and member if missing or corrupt."""
        if name not in self._members:
            raise DataError(f"{self.path}: missing member {name!r}")
        member = self._members[name]
        try:
            if self._zip is not None:
                return self._zip.read(member)
            if self._tar is not None:
                return self._tar.extractfile(member).read()
            with open(member, "rb") as f:
                return f.read()
        except _READ_ERRORS as error:
            raise DataError(f"{self.path}: member {name!r} is corrupt: {error}") from None

    def read_head(self, name: str, size: int) -> bytes:
        """The first `size` bytes of member `name` (fewer if it is shorter), without reading the
        rest; DataError as `read`."""
        if name not in self._members:
            raise DataError(f"{self.path}: missing member {name!r}")
        member = self._members[name]
        try:
            if self._zip is not None:
                with self._zip.open(member) as f:
                    return f.read(size)
            if self._tar is not None:
                return self._tar.extractfile(member).read(size)
            with open(member, "rb") as f:
                return f.read(size)
        except _READ_ERRORS as error:
            raise DataError(f"{self.path}: member {name!r} is corrupt: {error}") from None

    def where(self, name: str) -> str:
        """How messages name member `name`: its path in a folder, 'archive:member' in an archive."""
        if self._zip is None and self._tar is None:
            return os.path.join(self.path, *name.split("/"))
        return f"{self.path}:{name}"

    def storage_order(self, names: Iterable[str]) -> list[str]:
        """`names` sorted by position in the archive: reading in this order never seeks back (which
        would decompress a .tgz again from its start)."""
        if self._tar is None:
            return sorted(names)
        return sorted(names, key=lambda n: self._members[n].offset_data)

    def close(self) -> None:
        for handle in (self._zip, self._tar):
            if handle is not None:
                handle.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def find_input(manual_dir: str, candidates: Iterable[str]) -> str | None:
    """The first of `candidates` (file or folder names) present in `manual_dir`, else None."""
    for name in candidates:
        path = os.path.join(manual_dir, name)
        if os.path.exists(path):
            return path
    return None


def require_dir(path: str, what: str, flag: str = "") -> str:
    """`path`, which must be an existing folder; `flag` names the setting that gives it."""
    if not path:
        raise DataError(f"no {what} given{f' (set {flag})' if flag else ''}")
    if not os.path.isdir(path):
        raise DataError(f"{path}: {what} not found (expected a directory)")
    return path


# ------------------------------------------------------------------------------- images and masks
def _open_image(data: bytes, source: str) -> Image.Image:
    try:
        return Image.open(io.BytesIO(data))
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        raise DataError(f"{source}: not a readable image: {error}") from None


# Grey modes of more than 8 bits that Pillow's RGB conversion would clip at 255 (a binarised
# image), with the largest value of their range.
_DEEP_GREY = {"I;16": 65535, "I;16B": 65535, "I;16L": 65535, "I;16N": 65535, "I": 65535}


def rgb_array(image: Image.Image, source: str) -> np.ndarray:
    """uint8 [H, W, 3] of an image of any mode: grey, palette, CMYK and alpha converted (alpha
    dropped); 16-bit grey scaled to 8 bits (Pillow reads 16-bit colour as 8 bits already). Wider
    values (32-bit integers or floats) are a DataError naming the file: no scale is theirs."""
    if image.mode in _DEEP_GREY:
        grey = np.asarray(image).astype(np.float64)
        if grey.size and (grey.min() < 0 or grey.max() > _DEEP_GREY[image.mode]):
            raise DataError(
                f"{source}: a grey image of 32-bit values ({grey.min():g}..{grey.max():g}); "
                "expected 8 or 16 bits per channel: convert it first"
            )
        eight = np.round(grey * (255.0 / _DEEP_GREY[image.mode])).astype(np.uint8)
        return np.repeat(eight[..., None], 3, axis=-1)
    if image.mode == "F":
        raise DataError(
            f"{source}: an image of 32-bit floats; expected 8 or 16 bits per channel: convert "
            "it first"
        )
    return np.asarray(image.convert("RGB"))


def _is_8_bit_rgb(image: Image.Image, data: bytes) -> bool:
    """An RGB JPEG, or an RGB PNG of 8 bits per channel (its IHDR's bit depth, byte 24)."""
    if image.mode != "RGB":
        return False
    return image.format == "JPEG" or (image.format == "PNG" and data[24:25] == b"\x08")


def rgb_image(data: bytes, source: str) -> tuple[bytes, tuple[int, int]]:
    """(bytes to store, (height, width)) of an image file's bytes.

    8-bit RGB PNG and JPEG files are stored as they are (no re-encoding loss, JPEG stays small);
    any other format, mode (grey, palette, CMYK, alpha) or depth (16 bits) goes through
    `rgb_array` and is stored as PNG, so every stored image decodes to uint8 [H, W, 3].
    """
    image = _open_image(data, source)
    try:
        image.load()  # decode it all now: a truncated file fails here, not in training
        if _is_8_bit_rgb(image, data):
            return data, (image.height, image.width)
        return png_bytes(rgb_array(image, source)), (image.height, image.width)
    except DataError:
        raise
    except (OSError, ValueError) as error:
        raise DataError(f"{source}: not a readable image: {error}") from None


def read_index_mask(data: bytes, source: str) -> np.ndarray:
    """[H, W] uint8 class indices of a single-channel (grey or palette) mask image."""
    image = _open_image(data, source)
    if image.mode not in ("L", "P", "I", "I;16", "1"):
        raise DataError(
            f"{source}: a mask must be a single-channel image of class indices (grey or palette "
            f"PNG), got mode {image.mode}"
        )
    try:
        mask = np.asarray(image)
    except (OSError, ValueError) as error:
        raise DataError(f"{source}: not a readable image: {error}") from None
    if mask.size and mask.max() > 255:
        raise DataError(f"{source}: mask value {int(mask.max())} does not fit 0..255")
    return mask.astype(np.uint8)


def check_same_size(mask_hw, image_hw, mask_source: str, image_source: str) -> None:
    if tuple(mask_hw) != tuple(image_hw):
        raise DataError(
            f"{mask_source}: mask is {mask_hw[0]}x{mask_hw[1]} (HxW) but its image "
            f"{image_source} is {image_hw[0]}x{image_hw[1]}"
        )


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_HEADER_SIZE = 24  # the signature, then the IHDR chunk's length, type, width and height


def png_size(head: bytes) -> tuple[int, int] | None:
    """(height, width) from the first PNG_HEADER_SIZE bytes of a PNG file; None if not a PNG's."""
    if len(head) < PNG_HEADER_SIZE or head[:8] != PNG_SIGNATURE or head[12:16] != b"IHDR":
        return None
    width, height = struct.unpack(">II", head[16:24])
    return height, width


def mismatched_pairs(pairs, desc: str) -> list[tuple[int, str]]:
    """(index, one line naming both files and their sizes) of every (image, mask) PNG pair whose
    sizes differ, read from the PNG headers before any pixel is: seconds, not hours of conversion.
    `pairs`: (image archive, image member, mask archive, mask member); a member that is not a PNG
    is left to the conversion's own check."""
    bad = []
    for k, (images, image, masks, mask) in enumerate(progress(pairs, desc)):
        image_hw = png_size(images.read_head(image, PNG_HEADER_SIZE))
        mask_hw = png_size(masks.read_head(mask, PNG_HEADER_SIZE))
        if image_hw and mask_hw and image_hw != mask_hw:
            bad.append(
                (
                    k,
                    f"{masks.where(mask)}: mask is {mask_hw[0]}x{mask_hw[1]} (HxW) but its image "
                    f"{images.where(image)} is {image_hw[0]}x{image_hw[1]}",
                )
            )
    return bad


def check_pair_sizes(pairs, desc: str, hint: str = "") -> None:
    """A DataError naming every pair of `pairs` whose sizes differ (mismatched_pairs); `hint`
    ends the message."""
    lines = [line for _, line in mismatched_pairs(pairs, desc)]
    if not lines:
        return
    n = len(lines) - 1
    more = f"\n{n} more pair{'s differ' if n > 1 else ' differs'} in size:\n  " if n else ""
    raise DataError(lines[0] + more + "\n  ".join(lines[1:]) + (f"\n{hint}" if hint else ""))


def hold_out(items: list, fraction: str, seed: int, where: str) -> dict[str, list]:
    """{'train', 'validation'}: a deterministic `fraction` of `items` held out for validation
    (drawn as `partitions.split_labeled` draws a labeled share: ceil(n * fraction) items of one
    permutation of seed `seed`), the rest for training; both keep the order of `items`."""
    held, kept = partitions.split_labeled(len(items), fraction, seed)
    if not len(kept):
        raise DataError(
            f"{where}: {len(items)} example(s) only; holding out {fraction} for validation leaves "
            "none for training"
        )
    return {"train": [items[i] for i in kept], "validation": [items[i] for i in held]}


def check_mask_values(mask: np.ndarray, num_classes: int, source: str) -> None:
    bad = np.unique(mask[(mask >= num_classes) & (mask != IGNORE_LABEL)])
    if bad.size:
        raise DataError(
            f"{source}: mask values {bad[:8].tolist()} are neither a class (0..{num_classes - 1}) "
            f"nor the ignore value {IGNORE_LABEL}"
        )


def example(ident: str, image: bytes, mask: np.ndarray) -> dict:
    """A stored example: image bytes, the [H, W] mask as a grey PNG (read back as [H, W, 1])."""
    return {"image": image, "mask": png_bytes(mask), "id": ident}


# ---------------------------------------------------------------------------------------- TFDS
def features() -> tfds.features.FeaturesDict:
    """The feature spec of every segmentation builder here: what `synthetic_streets` stores.

    The image has no fixed encoding: JPEG files stay JPEG (see `rgb_image`); reading decodes either.
    """
    return tfds.features.FeaturesDict(
        {
            "image": tfds.features.Image(shape=(None, None, 3)),
            "mask": tfds.features.Image(shape=(None, None, 1), encoding_format="png"),
            "id": tfds.features.Text(),
        }
    )


class SegmentationBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """What the builders here share: version 1.0.0, the `features()` spec, image and mask as the
    supervised pair, array_record files (random access). A subclass sets `name`, DESCRIPTION,
    HOMEPAGE (if any), MANUAL_DOWNLOAD_INSTRUCTIONS and `code_path`, and generates the examples."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "First release."}
    DESCRIPTION = ""
    HOMEPAGE = None

    @classmethod
    def at(cls, data_dir: str, **kwargs):
        """The builder whose data live in `data_dir`."""
        return cls(data_dir=os.fspath(data_dir), file_format="array_record", **kwargs)

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description=self.DESCRIPTION,
            features=features(),
            supervised_keys=("image", "mask"),
            homepage=self.HOMEPAGE,
        )


def progress(items, desc: str):
    return tqdm(items, desc=desc, unit="img", dynamic_ncols=True)


def is_prepared(builder) -> bool:
    # Asking TFDS about a folder that does not exist logs a warning; that is the common case here.
    return os.path.isdir(os.fspath(builder.data_path)) and builder.is_prepared()


def download_and_prepare(builder, manual_dir: str):
    """Writes `builder`'s splits (a no-op when they are there already); returns the builder.

    TFDS's own bars count examples without a total; ours (`progress`) show them out of the total.
    """
    tfds.disable_progress_bar()
    try:
        builder.download_and_prepare(
            download_config=tfds.download.DownloadConfig(manual_dir=os.fspath(manual_dir))
        )
    finally:
        tfds.enable_progress_bar()
    return builder


def prepare_from(builder, manual_dir: str, find_inputs):
    """`builder`, written from the inputs in `manual_dir` unless already prepared;
    `find_inputs(manual_dir)` runs first, so that a missing input fails early, named."""
    if not is_prepared(builder):
        find_inputs(manual_dir)
    return download_and_prepare(builder, manual_dir)
