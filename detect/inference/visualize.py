"""Drawing detections (boxes, translucent masks, skeletons) on images."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torchvision.utils import draw_bounding_boxes, draw_keypoints, draw_segmentation_masks

from detect.structures import Detections

__all__ = ["draw_detections"]

_PALETTE = [
    "#e6194b", "#3cb44b", "#ffe119", "#4363d8", "#f58231", "#911eb4", "#46f0f0", "#f032e6",
    "#bcf60c", "#fabebe", "#008080", "#e6beff", "#9a6324", "#fffac8", "#800000", "#aaffc3",
]  # fmt: skip


def draw_detections(
    image: np.ndarray,
    detections: Detections,
    names: Sequence[str],
    score_thresh: float = 0.3,
    skeleton: Sequence[tuple[int, int]] = (),
    keypoint_thresh: float = 0.5,
    keypoint_labels: Sequence[int] | None = None,
) -> np.ndarray:
    """Draw boxes with ``name score`` labels, masks and keypoints on an ``(H, W, 3)`` uint8 RGB image.

    Args:
        skeleton: 1-based keypoint index pairs to join, as in COCO categories.
        keypoint_thresh: keypoints whose confidence is below this are not drawn.
        keypoint_labels: classes whose keypoints are drawn (default: all).

    Returns:
        A new image.
    """
    detections = detections.select(detections.scores >= score_thresh).to("cpu")
    canvas = torch.from_numpy(np.array(image)).permute(2, 0, 1)
    if len(detections) == 0:
        return np.array(image)
    labels = detections.labels.tolist()
    colors = [_PALETTE[label % len(_PALETTE)] for label in labels]
    if detections.masks is not None:
        canvas = draw_segmentation_masks(canvas, detections.masks.bool(), alpha=0.45, colors=colors)
    canvas = draw_bounding_boxes(
        canvas,
        detections.boxes.float(),
        labels=[f"{names[label]} {score:.2f}" for label, score in zip(labels, detections.scores.tolist())],
        colors=colors,
        width=max(1, round(max(image.shape[:2]) / 320)),
    )
    if detections.keypoints is not None:
        keypoints = detections.keypoints.float()
        visible = keypoints[..., 2] >= keypoint_thresh
        if keypoint_labels is not None:
            visible &= torch.isin(detections.labels, torch.tensor(list(keypoint_labels)))[:, None]
        radius = max(2, round(max(image.shape[:2]) / 200))
        canvas = draw_keypoints(
            canvas,
            keypoints[..., :2],
            visibility=visible,
            connectivity=[(a - 1, b - 1) for a, b in skeleton],
            colors="#ff3030",
            radius=radius,
            width=max(1, radius // 2),
        )
    return canvas.permute(1, 2, 0).numpy()
