"""Decoding one image file into RGB uint8, with what had to be mended and why a file is unusable."""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

__all__ = ["ImageFault", "ImageHeader", "decode_bytes", "decode_image", "probe_image", "read_image"]

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


@dataclass(frozen=True)
class ImageHeader:
    """What an image file's header says: size after its EXIF orientation, mode, orientation."""

    width: int
    height: int
    mode: str
    orientation: int


def _check_file(path: Path) -> None:
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise ImageFault("image_missing", path, "no such file") from None
    except OSError as error:
        raise ImageFault("image_missing", path, f"cannot be read ({error.strerror})") from None
    if size == 0:
        raise ImageFault("image_empty", path, "empty file (0 bytes)")


@contextmanager
def _faults_of(path: Path) -> Iterator[None]:
    """PIL's errors on ``path`` as :class:`ImageFault` (not an image; truncated or corrupt)."""
    try:
        yield
    except ImageFault:
        raise
    except UnidentifiedImageError:
        raise ImageFault("image_not_image", path, "not an image file PIL can identify") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        detail = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ImageFault("image_corrupt", path, f"cannot be decoded ({detail})") from None


def probe_image(path: str | Path) -> ImageHeader:
    """Read only the header (cheap: no pixels decoded); :class:`ImageFault` as :func:`decode_image`."""
    path = Path(path)
    _check_file(path)
    with _faults_of(path), Image.open(path) as image:
        width, height = image.size
        orientation = image.getexif().get(_ORIENTATION, 1)
        mode = image.mode
    if orientation in (5, 6, 7, 8):  # the transposing orientations
        width, height = height, width
    return ImageHeader(width, height, mode, orientation)


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
    _check_file(path)
    return _decode(path, path)


def _decode(source: Path | BinaryIO, name: Path, max_pixels: int | None = None) -> tuple[np.ndarray, list]:
    mended: list[tuple[str, str]] = []
    with _faults_of(name), Image.open(source) as image:
        if max_pixels is not None and image.width * image.height > max_pixels:
            # Checked on the header, before a decompression bomb is expanded.
            raise ImageFault(
                "image_too_large",
                name,
                f"{image.width}x{image.height} pixels, over the limit of {max_pixels:,}",
            )
        image.load()
        orientation = image.getexif().get(_ORIENTATION, 1)
        if orientation not in (0, 1):
            mended.append(("image_exif_rotated", f"EXIF orientation {orientation} applied"))
            image = ImageOps.exif_transpose(image)
        if image.mode != "RGB":
            mended.append(("image_mode", f"{image.mode} converted to RGB"))
        return _to_rgb(image), mended


def decode_bytes(data: bytes, name: str = "upload", max_pixels: int | None = None) -> np.ndarray:
    """An encoded image held in memory (an upload) to ``(H, W, 3)`` uint8 RGB, as :func:`decode_image`.

    Raises:
        ImageFault: empty, not an image, truncated or corrupt, or (``image_too_large``) more than
            ``max_pixels`` pixels according to its header.
    """
    if not data:
        raise ImageFault("image_empty", Path(name), "empty file (0 bytes)")
    return _decode(io.BytesIO(data), Path(name), max_pixels)[0]


def read_image(path: str | Path) -> np.ndarray:
    """Read any image as RGB ``(H, W, 3)`` uint8, EXIF orientation applied (:class:`ImageFault` if unusable)."""
    return decode_image(path)[0]
