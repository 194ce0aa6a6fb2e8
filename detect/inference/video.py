"""Writing drawn frames back into a video file."""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["VideoWriter"]


class VideoWriter:
    """An MP4 (``mp4v``) writer that takes RGB frames; opened on the first frame, sized by it.

    Args:
        path: the output file.
        fps: frames per second of the output.
    """

    def __init__(self, path: str | Path, fps: float) -> None:
        self.path = Path(path)
        self.fps = float(fps) or 25.0
        self._writer = None
        self.frames = 0

    def write(self, frame: np.ndarray) -> None:
        import cv2

        if self._writer is None:
            height, width = frame.shape[:2]
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._writer = cv2.VideoWriter(
                str(self.path), cv2.VideoWriter_fourcc(*"mp4v"), self.fps, (width, height)
            )
            if not self._writer.isOpened():
                raise OSError(f"cannot write video {self.path}")
        self._writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        self.frames += 1

    def close(self) -> None:
        if self._writer is not None:
            self._writer.release()
            self._writer = None

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
