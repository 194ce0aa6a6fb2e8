"""The Python API: ``model = detect.load(path); results = model.predict(source)``."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from detect.data.coco import CategoryMap
from detect.data.transforms import build_transforms, letterbox_params
from detect.inference.metadata import ModelInfo
from detect.inference.results import Results
from detect.inference.runtimes import Runtime, open_runtime
from detect.inference.sources import Frame, iter_frames
from detect.models.heads.postprocess import Decoded, Selection, finalize, split
from detect.structures import Detections, ImageMeta

__all__ = ["Predictor", "load"]

log = logging.getLogger(__name__)


class Predictor:
    """Letterbox, run, decode and map back: images in, one :class:`Results` per image out.

    The same object serves a checkpoint and every exported format; ``tools/predict.py`` and
    ``tools/eval.py model=...`` use it too.

    Args:
        runtime: the loaded model.
        score_thresh: detections below this are dropped from the results.
        batch_size: images run together by :meth:`stream`.
    """

    def __init__(self, runtime: Runtime, score_thresh: float = 0.25, batch_size: int = 1) -> None:
        self.runtime = runtime
        self.score_thresh = float(score_thresh)
        self.batch_size = int(batch_size)
        self._transform = build_transforms(self.image_size)

    @property
    def info(self) -> ModelInfo:
        return self.runtime.info

    @property
    def image_size(self) -> int:
        return self.info.image_size

    @image_size.setter
    def image_size(self, value: int) -> None:
        self.runtime.resize(int(value))
        self._transform = build_transforms(self.image_size)

    @property
    def categories(self) -> CategoryMap:
        return self.info.category_map

    @property
    def names(self) -> tuple[str, ...]:
        return self.info.names

    @property
    def task(self) -> str:
        return self.info.task

    def __repr__(self) -> str:
        parts = ", ".join(f"{k}={v}" for k, v in self.info.components.items())
        return (
            f"Predictor({self.runtime.path.name}, {self.runtime.name}, task={self.task}, "
            f"{len(self.names)} classes, {self.image_size} px{', ' + parts if parts else ''})"
        )

    def letterbox(self, image: np.ndarray) -> tuple[np.ndarray, ImageMeta]:
        """The ``(3, S, S)`` uint8 network input for an RGB image, and how to map back from it."""
        height, width = image.shape[:2]
        out = self._transform(
            image=image, bboxes=np.zeros((0, 4)), labels=[], instances=[], keypoints=np.zeros((0, 2))
        )["image"]
        scale, offset = letterbox_params(height, width, self.image_size)
        return np.ascontiguousarray(out.transpose(2, 0, 1)), ImageMeta(0, (height, width), scale, offset)

    def infer(self, images: np.ndarray | torch.Tensor) -> list[Detections]:
        """Detections in the input frame for a ``(B, 3, S, S)`` uint8 batch of letterboxed images.

        Returns every detection the model's own ``score_thresh`` keeps (``info.postprocess``), as
        validation scores them; :meth:`predict` then applies this predictor's threshold.
        """
        if isinstance(images, torch.Tensor):
            images = images.cpu().numpy()
        batch, _, height, width = images.shape
        outputs = self.runtime(images)
        if self.info.nms:
            selection = Selection(
                outputs["batch_index"].long(),
                outputs["batch_index"].long(),
                outputs["boxes"].float(),
                outputs["scores"].float(),
                outputs["labels"].long(),
            )
            extras = {}
            if "masks" in outputs:
                extras["masks"] = outputs["masks"].bool()
            if "keypoints" in outputs:
                extras["keypoints"] = outputs["keypoints"].float()
            return split(selection, extras, batch)
        decoded = Decoded(**{name: value.float() for name, value in outputs.items()})
        return finalize(decoded, (height, width), self.info.postprocess)

    def _run(self, frames: list[Frame], score_thresh: float) -> list[Results]:
        inputs, metas = zip(*(self.letterbox(frame.image) for frame in frames))
        detections = self.infer(np.stack(inputs))
        results = []
        for frame, meta, found in zip(frames, metas, detections):
            found = found.select(found.scores >= score_thresh).rescale(meta).to("cpu")
            results.append(
                Results(found, self.categories, frame.image, frame.name, frame.index, frame.video, frame.fps)
            )
        return results

    def stream(
        self, source: Any, score_thresh: float | None = None, batch_size: int | None = None
    ) -> Iterator[Results]:
        """Results one image at a time, reading ``source`` lazily (constant memory for any length).

        ``source``: see :func:`~detect.inference.sources.iter_frames` (paths, folders, globs,
        ``.txt`` lists, videos, streams, PIL images, arrays, tensors, lists of them).
        """
        thresh = self.score_thresh if score_thresh is None else float(score_thresh)
        size = batch_size or self.batch_size
        pending: list[Frame] = []
        for frame in iter_frames(source):
            pending.append(frame)
            if len(pending) >= size:
                yield from self._run(pending, thresh)
                pending = []
        if pending:
            yield from self._run(pending, thresh)

    def predict(
        self, source: Any, score_thresh: float | None = None, batch_size: int | None = None
    ) -> list[Results]:
        """One :class:`Results` per image of ``source`` (see :meth:`stream` for what it may be)."""
        return list(self.stream(source, score_thresh, batch_size))

    __call__ = predict


def load(
    path: str | Path,
    device: str | torch.device = "cpu",
    score_thresh: float = 0.25,
    image_size: int | None = None,
    **options: Any,
) -> Predictor:
    """A :class:`Predictor` for a training checkpoint (``.ckpt``) or an exported model.

    Exported files: ``.onnx`` (ONNX Runtime), ``.torchscript`` / ``.pt`` (TorchScript), ``.xml``
    (OpenVINO IR). The file alone is enough: classes, input size and decoding travel inside it.

    Args:
        path: the model file.
        device: where a checkpoint or TorchScript model runs.
        score_thresh: detections below this are dropped.
        image_size: the network input side (a checkpoint may run at any multiple of its stride;
            an exported file only at the size it was exported at).
        options: runtime options: ``precision="bf16"``, ``fuse=False``, ``threads=N``.
    """
    runtime = open_runtime(path, device, **options)
    if image_size is not None and int(image_size) != runtime.info.image_size:
        runtime.resize(int(image_size))
    return Predictor(runtime, score_thresh=score_thresh)
