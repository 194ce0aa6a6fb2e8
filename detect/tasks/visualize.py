"""Drawing detections on images."""

from __future__ import annotations

import numpy as np
import torch
from torchvision.utils import draw_bounding_boxes

from detect.structures import Detections

__all__ = ["draw_detections"]

_PALETTE = [
    "#e6194b", "#3cb44b", "#ffe119", "#4363d8", "#f58231", "#911eb4", "#46f0f0", "#f032e6",
    "#bcf60c", "#fabebe", "#008080", "#e6beff", "#9a6324", "#fffac8", "#800000", "#aaffc3",
]  # fmt: skip


def draw_detections(
    image: np.ndarray, detections: Detections, names: tuple[str, ...], score_thresh: float = 0.3
) -> np.ndarray:
    """Draw boxes with ``name score`` labels on an ``(H, W, 3)`` uint8 RGB image; returns a new image."""
    keep = detections.scores >= score_thresh
    boxes = detections.boxes[keep].cpu()
    labels = detections.labels[keep].cpu().tolist()
    scores = detections.scores[keep].cpu().tolist()
    tensor = torch.from_numpy(np.array(image)).permute(2, 0, 1)
    if len(boxes) == 0:
        return image.copy()
    drawn = draw_bounding_boxes(
        tensor,
        boxes,
        labels=[f"{names[label]} {score:.2f}" for label, score in zip(labels, scores)],
        colors=[_PALETTE[label % len(_PALETTE)] for label in labels],
        width=max(1, round(max(image.shape[:2]) / 320)),
    )
    return drawn.permute(1, 2, 0).numpy()
