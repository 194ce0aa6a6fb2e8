"""Prediction entry: a model and a source in; drawn images and videos, ``predictions.json`` out.

A thin user of :func:`detect.load`: still images go to ``predictions.json`` (one record per image,
written as they come so that any number of images runs in constant memory) and ``images/``; each
video goes to ``videos/<name>.mp4`` (drawn) and ``videos/<name>.jsonl`` (one record per frame).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import IO, Any

import torch
from omegaconf import DictConfig
from PIL import Image
from tqdm import tqdm

from detect.inference import Predictor, Results, VideoWriter, load
from detect.inference.sources import VIDEO_SUFFIXES, find_files

__all__ = ["predict"]

log = logging.getLogger(__name__)


def _device(requested: str) -> torch.device:
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)


def _model_path(cfg: DictConfig) -> str:
    path = cfg.get("model") or cfg.get("ckpt_path")
    if not path:
        raise ValueError(
            "give the model to predict with: model=path/to/last.ckpt (or an exported .onnx, ...)"
        )
    return str(path)


def _count_images(source: Any) -> int | None:
    """Images in a path source, for the progress bar (None for videos and streams)."""
    if not isinstance(source, str) or source.isdigit() or "://" in source:
        return None
    files = find_files(source)
    if any(f.suffix.lower() in VIDEO_SUFFIXES for f in files):
        return None
    return len(files)


class _Outputs:
    """Where each result goes: drawn image and a streamed ``predictions.json``, or a video and its jsonl."""

    def __init__(self, output_dir: Path, save_drawn: bool) -> None:
        self.output_dir = output_dir
        self.save_drawn = save_drawn
        self.images_dir = output_dir / "images"
        self.videos_dir = output_dir / "videos"
        self.images = 0
        self.frames = 0
        self._json: IO[str] | None = None
        self._video: tuple[str, VideoWriter | None, IO[str]] | None = None
        self._names: set[str] = set()

    def add(self, result: Results) -> None:
        if result.video is None:
            self._add_image(result)
        else:
            self._add_frame(result)

    def _add_image(self, result: Results) -> None:
        if self._json is None:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            self._json = (self.output_dir / "predictions.json").open("w")
            self._json.write("[\n")
        else:
            self._json.write(",\n")
        self._json.write(result.to_json())
        self.images += 1
        if self.save_drawn:
            self.images_dir.mkdir(parents=True, exist_ok=True)
            Image.fromarray(result.plot()).save(self.images_dir / f"{self._unique(result.path)}.jpg")

    def _unique(self, path: str) -> str:
        stem = Path(path).stem if not path.startswith("<") else f"image_{self.images}"
        name, n = stem, 1
        while name in self._names:
            n += 1
            name = f"{stem}_{n}"
        self._names.add(name)
        return name

    def _add_frame(self, result: Results) -> None:
        if self._video is None or self._video[0] != result.video:
            self._close_video()
            self.videos_dir.mkdir(parents=True, exist_ok=True)
            stem = self._unique(result.video or "stream")
            writer = VideoWriter(self.videos_dir / f"{stem}.mp4", result.fps) if self.save_drawn else None
            self._video = (result.video or "", writer, (self.videos_dir / f"{stem}.jsonl").open("w"))
        _, writer, lines = self._video
        lines.write(result.to_json() + "\n")
        if writer is not None:
            writer.write(result.plot())
        self.frames += 1

    def _close_video(self) -> None:
        if self._video is not None:
            _, writer, lines = self._video
            if writer is not None:
                writer.close()
            lines.close()
            self._video = None

    def close(self) -> None:
        if self._json is not None:
            self._json.write("\n]\n")
            self._json.close()
            self._json = None
        self._close_video()


def predict(cfg: DictConfig) -> dict[str, Any]:
    """Predict on every image and frame of ``cfg.source`` with ``cfg.model``.

    Returns:
        ``images``, ``frames`` counted, ``seconds`` and ``fps`` (images and frames per second, all
        included: reading, letterbox, forward, NMS, drawing, writing).
    """
    options = {"precision": cfg.precision} if str(_model_path(cfg)).endswith(".ckpt") else {}
    predictor: Predictor = load(
        _model_path(cfg),
        _device(cfg.device),
        score_thresh=cfg.score_thresh,
        image_size=cfg.image_size,
        **options,
    )
    print(predictor)
    source = str(cfg.source)
    outputs = _Outputs(Path(cfg.paths.output_dir), cfg.save_drawn)
    start = time.perf_counter()
    bar = tqdm(
        predictor.stream(source, batch_size=cfg.batch_size),
        total=_count_images(source),
        desc="predict",
        unit="img",
    )
    try:
        for result in bar:
            outputs.add(result)
    finally:
        outputs.close()
        bar.close()
    seconds = time.perf_counter() - start
    done = outputs.images + outputs.frames
    summary = {"images": outputs.images, "frames": outputs.frames, "seconds": round(seconds, 2)}
    summary["fps"] = round(done / seconds, 2) if seconds > 0 else 0.0
    where = []
    if outputs.images:
        where.append(f"{outputs.images} images -> {outputs.output_dir / 'predictions.json'}")
    if outputs.frames:
        where.append(f"{outputs.frames} video frames -> {outputs.videos_dir}")
    if not done:
        raise ValueError(f"nothing in {source} could be read (see the warnings above)")
    print("; ".join(where) + f" ({summary['fps']:.1f} img/s)")
    return summary
