"""What ``predict`` reads: files, folders, globs, path lists, videos, streams and in-memory images.

Everything is read lazily, one frame at a time, so a folder of thousands of images or an hour of
video runs in constant memory. A file that cannot be read is logged with its name and skipped;
a source that names nothing (no such path, a video that cannot be opened) raises
:class:`SourceError` with one line saying what was wrong.
"""

from __future__ import annotations

import glob
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps

from detect.data.images import ImageFault, read_image

__all__ = [
    "IMAGE_SUFFIXES",
    "VIDEO_SUFFIXES",
    "Frame",
    "SourceError",
    "find_files",
    "iter_frames",
    "to_rgb",
]

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif"}
VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv"}
_STREAM_PREFIXES = ("rtsp://", "rtmp://", "http://", "https://")


class SourceError(ValueError):
    """A source that names nothing readable."""


@dataclass
class Frame:
    """One image to predict on.

    Attributes:
        image: ``(H, W, 3)`` uint8 RGB.
        name: the file it came from, or ``"<array 3>"`` for in-memory images.
        index: frame number within its video (0 for still images).
        video: the video or stream it belongs to, or ``None``.
        fps: the video's frame rate (0 for still images).
    """

    image: np.ndarray
    name: str
    index: int = 0
    video: str | None = None
    fps: float = 0.0


def to_rgb(value: Any, name: str = "image") -> np.ndarray:
    """An ``(H, W, 3)`` uint8 RGB array from a PIL image, a numpy array or a tensor.

    Numpy arrays are taken as RGB ``(H, W)``, ``(H, W, 3)`` or ``(H, W, 4)``; tensors as
    ``(3, H, W)``; floats as ``[0, 1]``.
    """
    if isinstance(value, Image.Image):
        return np.asarray(ImageOps.exif_transpose(value).convert("RGB"))
    if type(value).__module__.startswith("torch"):
        value = value.detach().cpu()
        if value.ndim == 3 and value.shape[0] in (1, 3, 4):
            value = value.permute(1, 2, 0)
        value = value.numpy()
    if not isinstance(value, np.ndarray):
        raise SourceError(
            f"cannot predict on a {type(value).__name__}: give a path, PIL image, array or tensor"
        )
    array = value
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=-1)
    if array.ndim != 3 or array.shape[-1] not in (3, 4):
        raise SourceError(f"{name} has shape {tuple(value.shape)}; expected (H, W, 3) or (3, H, W)")
    array = array[..., :3]
    if array.dtype != np.uint8:
        if np.issubdtype(array.dtype, np.floating):
            array = np.clip(array * 255.0 + 0.5, 0, 255)
        array = array.astype(np.uint8)
    return np.ascontiguousarray(array)


def find_files(source: str | Path) -> list[Path]:
    """Image and video files named by a path: one file, a folder (recursive), a glob or a ``.txt`` list."""
    path = Path(source)
    if path.is_file() and path.suffix.lower() == ".txt":
        base = path.parent
        listed = [line.strip() for line in path.read_text().splitlines()]
        files = [Path(entry) if Path(entry).is_absolute() else base / entry for entry in listed if entry]
        if not files:
            raise SourceError(f"{path} lists no files")
        return files
    if path.is_file():
        return [path]
    suffixes = IMAGE_SUFFIXES | VIDEO_SUFFIXES
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.suffix.lower() in suffixes and p.is_file())
        if not files:
            raise SourceError(f"no images or videos in {path}")
        return files
    files = sorted(Path(p) for p in glob.glob(str(source), recursive=True) if Path(p).is_file())
    if not files:
        raise SourceError(f"no such file, folder or pattern: {source}")
    return files


def _video_frames(name: str, target: str | int) -> Iterator[Frame]:
    import cv2

    capture = cv2.VideoCapture(target)
    if not capture.isOpened():
        raise SourceError(f"cannot open video {name}: not a video file or stream OpenCV can decode")
    fps = float(capture.get(cv2.CAP_PROP_FPS) or 0.0) or 25.0
    expected = int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    index = 0
    try:
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            yield Frame(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB), name, index, name, fps)
            index += 1
    finally:
        capture.release()
    if index == 0:
        log.warning("skipping %s: no frame could be decoded", name)
    elif isinstance(target, str) and expected > index + 1:
        log.warning(
            "%s: read %d of the %d frames it declares; the rest could not be decoded", name, index, expected
        )


def _file_frames(path: Path) -> Iterator[Frame]:
    if path.suffix.lower() in VIDEO_SUFFIXES:
        if not path.is_file():
            log.warning("skipping %s: no such file", path)
            return
        yield from _video_frames(str(path), str(path))
        return
    try:
        image = read_image(path)
    except ImageFault as fault:
        log.warning("skipping %s: %s", path, fault.detail)
        return
    yield Frame(image, str(path))


def iter_frames(source: Any) -> Iterator[Frame]:
    """Every frame of ``source``, read lazily.

    ``source`` may be a path (image, video, folder, glob, ``.txt`` of paths), a stream URL
    (``rtsp://``, ``http://``...), a webcam index (``0`` or ``"0"``), a PIL image, a numpy array,
    a tensor (``(3, H, W)`` or a ``(B, 3, H, W)`` batch), or a list of any of these.
    """
    if isinstance(source, int) or (isinstance(source, str) and source.isdigit()):
        yield from _video_frames(f"camera {source}", int(source))
        return
    if isinstance(source, str) and source.startswith(_STREAM_PREFIXES):
        path = Path(source.split("?")[0])
        if path.suffix.lower() in IMAGE_SUFFIXES:
            raise SourceError(f"{source}: download the image first; only video streams are read from URLs")
        yield from _video_frames(source, source)
        return
    if isinstance(source, str | Path):
        for path in find_files(source):
            yield from _file_frames(path)
        return
    if type(source).__module__.startswith("torch") and getattr(source, "ndim", 0) == 4:
        for i, image in enumerate(source):
            yield Frame(to_rgb(image, f"image {i}"), f"<tensor {i}>")
        return
    if isinstance(source, Iterable) and not isinstance(source, np.ndarray):
        for i, item in enumerate(source):
            if isinstance(item, str | Path):
                yield from iter_frames(item)
            else:
                yield Frame(to_rgb(item, f"item {i}"), f"<{type(item).__name__} {i}>")
        return
    yield Frame(to_rgb(source), f"<{type(source).__name__}>")
