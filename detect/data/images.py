"""Decoding one image file into RGB uint8, with what had to be mended and why a file is unusable."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

__all__ = ["ImageFault", "decode_image", "read_image"]

_ORIENTATION = 0x0112
_SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I;16N", "I")


class ImageFault(OSError):
    """An image file that cannot be used: ``kind`` is a fault kind of :mod:`detect.data.doctor`."""

    def __init__(self, kind: str, path: Path, detail: str) -> None:
        super().__init__(f"{path}: {detail}")
        self.kind = kind
        self.path = path
        self.detail = detail


def _to_rgb(image: Image.Image) -> np.ndarray:
    if image.mode in _SIXTEEN_BIT or image.mode == "F":
        # PIL's convert("RGB") clips 16-bit values at 255, which whitens almost every pixel.
        values = np.asarray(image, dtype=np.float32)
        if image.mode != "F" and values.max(initial=0) > 255:
            values = values / 257.0
        gray = np.clip(values + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=-1)
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    return np.asarray(image.convert("RGB"))


def decode_image(path: str | Path) -> tuple[np.ndarray, list[tuple[str, str]]]:
    """Decode a whole image file to ``(H, W, 3)`` uint8 RGB, EXIF orientation applied.

    Returns:
        The image and what was mended on the way, as ``(kind, detail)`` pairs
        (``image_exif_rotated``, ``image_mode``).

    Raises:
        ImageFault: the file is missing, empty, not an image, or cannot be decoded to the end
            (truncated or corrupt). Opening reads only the header, so the pixels are decoded here.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise ImageFault("image_missing", path, "no such file") from None
    except OSError as error:
        raise ImageFault("image_missing", path, f"cannot be read ({error.strerror})") from None
    if size == 0:
        raise ImageFault("image_empty", path, "empty file (0 bytes)")
    mended: list[tuple[str, str]] = []
    try:
        with Image.open(path) as image:
            image.load()
            orientation = image.getexif().get(_ORIENTATION, 1)
            if orientation not in (0, 1):
                mended.append(("image_exif_rotated", f"EXIF orientation {orientation} applied"))
                image = ImageOps.exif_transpose(image)
            if image.mode != "RGB":
                mended.append(("image_mode", f"{image.mode} converted to RGB"))
            return _to_rgb(image), mended
    except UnidentifiedImageError:
        raise ImageFault("image_not_image", path, "not an image file PIL can identify") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        detail = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ImageFault("image_corrupt", path, f"cannot be decoded ({detail})") from None


def read_image(path: str | Path) -> np.ndarray:
    """Read any image as RGB ``(H, W, 3)`` uint8, EXIF orientation applied (:class:`ImageFault` if unusable)."""
    return decode_image(path)[0]
