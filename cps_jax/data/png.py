"""The one PNG encoder: stored masks and images, prediction files and figures."""

import io

import numpy as np
from PIL import Image

# zlib level of stored data: fast to write, files a little larger than Pillow's default (6).
FAST = 1
# Pillow's default, for files people keep (predictions, figures).
DEFAULT = 6


def png_bytes(array: np.ndarray, compress_level: int = FAST) -> bytes:
    """The PNG of a uint8 [H, W] (grey) or [H, W, 3] (RGB) array."""
    buf = io.BytesIO()
    Image.fromarray(np.asarray(array)).save(buf, format="PNG", compress_level=compress_level)
    return buf.getvalue()


def save_png(path: str, array: np.ndarray) -> None:
    """Writes `array` to `path` as a PNG."""
    with open(path, "wb") as f:
        f.write(png_bytes(array, DEFAULT))
