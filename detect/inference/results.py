"""One image's predictions, in the original image's pixels, with ways to draw and serialise them."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from detect.data.coco import CategoryMap
from detect.eval.coco import detections_to_coco, encode_masks
from detect.inference.visualize import draw_detections
from detect.structures import Detections

__all__ = ["Results"]


@dataclass
class Results:
    """Detections of one image.

    Attributes:
        detections: boxes (xyxy, original pixels), scores, labels, and masks ``(N, H, W)`` bool
            or keypoints ``(N, K, 3)`` (x, y, confidence) as the model predicts them.
        categories: the model's class map (labels -> ids, names, keypoint names and skeleton).
        image: the ``(H, W, 3)`` uint8 RGB image they were predicted on.
        path: the file (or ``"<array 0>"``) it came from.
        frame: frame number in its video; ``video`` names the video (``None`` for still images).
        fps: the video's frame rate.
    """

    detections: Detections
    categories: CategoryMap
    image: np.ndarray = field(repr=False)
    path: str = ""
    frame: int = 0
    video: str | None = None
    fps: float = 0.0

    def __len__(self) -> int:
        return len(self.detections)

    @property
    def orig_shape(self) -> tuple[int, int]:
        """``(height, width)`` of the image."""
        return int(self.image.shape[0]), int(self.image.shape[1])

    @property
    def boxes(self) -> np.ndarray:
        """``(N, 4)`` xyxy in original pixels."""
        return self.detections.boxes.numpy()

    @property
    def scores(self) -> np.ndarray:
        return self.detections.scores.numpy()

    @property
    def labels(self) -> np.ndarray:
        """``(N,)`` contiguous class indices (``names[label]``)."""
        return self.detections.labels.numpy()

    @property
    def category_ids(self) -> list[int]:
        """The dataset's category ids of the detections."""
        return [self.categories.ids[i] for i in self.detections.labels.tolist()]

    @property
    def names(self) -> list[str]:
        """Class names of the detections."""
        return [self.categories.names[i] for i in self.detections.labels.tolist()]

    @property
    def masks(self) -> np.ndarray | None:
        """``(N, H, W)`` bool, for segmentation models."""
        return None if self.detections.masks is None else self.detections.masks.numpy()

    @property
    def keypoints(self) -> np.ndarray | None:
        """``(N, K, 3)`` x, y, confidence, for pose models."""
        return None if self.detections.keypoints is None else self.detections.keypoints.numpy()

    def plot(self, score_thresh: float = 0.0) -> np.ndarray:
        """The image with boxes, labels, masks and skeletons drawn on it (a new array)."""
        keypoints = self.categories.keypoints
        labels = None
        if keypoints is not None:
            labels = [self.categories.index(id_) for id_ in keypoints.category_ids]
        return draw_detections(
            self.image,
            self.detections,
            self.categories.names,
            score_thresh,
            skeleton=keypoints.skeleton if keypoints else (),
            keypoint_labels=labels,
        )

    def to_coco(self, image_id: int = 0) -> list[dict]:
        """COCO results records (``bbox`` xywh, ``segmentation`` RLE, ``keypoints``) for ``image_id``."""
        return detections_to_coco(image_id, self.detections, self.categories.ids)

    def to_dict(self) -> dict[str, Any]:
        """The ``predictions.json`` record: file, size and the detections."""
        height, width = self.orig_shape
        labels = self.detections.labels.tolist()
        entry: dict[str, Any] = {"file": self.path}
        if self.video is not None:
            entry["frame"] = self.frame
        entry.update(
            width=width,
            height=height,
            boxes=[[round(v, 2) for v in box] for box in self.detections.boxes.tolist()],
            scores=[round(v, 4) for v in self.detections.scores.tolist()],
            category_ids=[self.categories.ids[i] for i in labels],
            category_names=[self.categories.names[i] for i in labels],
        )
        if self.detections.masks is not None:
            entry["masks"] = encode_masks(self.detections.masks.numpy())
        if self.detections.keypoints is not None:
            # (N, K, 3) -> one flat x, y, confidence list per detection; N may be 0.
            flat = self.detections.keypoints.flatten(1).tolist()
            entry["keypoints"] = [[round(v, 2) for v in kp] for kp in flat]
        return entry

    def to_json(self, **kwargs: Any) -> str:
        """:meth:`to_dict` as a JSON string (``kwargs`` go to ``json.dumps``)."""
        return json.dumps(self.to_dict(), **kwargs)

    def select(self, keep: torch.Tensor) -> Results:
        """The detections picked by a bool mask or index tensor, same image."""
        return Results(
            self.detections.select(keep),
            self.categories,
            self.image,
            self.path,
            self.frame,
            self.video,
            self.fps,
        )
