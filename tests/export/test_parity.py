"""match_detections: the same detections, up to the decisions float noise can flip."""

from __future__ import annotations

import torch

from detect.export.parity import match_detections
from detect.structures import Detections


def dets(boxes: list[list[float]], scores: list[float], labels: list[int] | None = None) -> Detections:
    return Detections(
        torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        torch.tensor(scores),
        torch.tensor(labels if labels is not None else [0] * len(scores)),
    )


def box_at_iou(iou: float) -> list[float]:
    """A 10x10 box shifted right so that it overlaps [0, 0, 10, 10] at ``iou``."""
    shift = 10 * (1 - iou) / (1 + iou)
    return [shift, 0.0, 10 + shift, 10.0]


def test_identical_and_different_detections() -> None:
    a = dets([[0, 0, 10, 10], [20, 20, 30, 30]], [0.9, 0.5])
    assert match_detections(a, a, cutoff=0.001)
    moved = dets([[0, 0, 10, 10], [25, 20, 35, 30]], [0.9, 0.5])
    assert not match_detections(a, moved, cutoff=0.001, nms_iou=0.7)
    relabelled = dets([[0, 0, 10, 10], [20, 20, 30, 30]], [0.9, 0.5], [0, 1])
    assert not match_detections(a, relabelled, cutoff=0.001, nms_iou=0.7)


def test_a_detection_at_the_score_cutoff_may_be_on_one_side_only() -> None:
    a = dets([[0, 0, 10, 10], [20, 20, 30, 30]], [0.9, 0.00105])
    b = dets([[0, 0, 10, 10]], [0.9])
    assert match_detections(a, b, cutoff=0.001)
    assert not match_detections(dets([[0, 0, 10, 10], [20, 20, 30, 30]], [0.9, 0.3]), b, cutoff=0.001)


def test_a_suppression_at_the_nms_threshold_may_flip() -> None:
    kept = [0.0, 0.0, 10.0, 10.0]
    at_threshold = dets([kept, box_at_iou(0.7002)], [0.9, 0.6])
    suppressed = dets([kept], [0.9])
    assert match_detections(at_threshold, suppressed, cutoff=0.001, nms_iou=0.7)
    assert match_detections(suppressed, at_threshold, cutoff=0.001, nms_iou=0.7)
    assert not match_detections(at_threshold, suppressed, cutoff=0.001)  # without the NMS rule
    far_below = dets([kept, box_at_iou(0.5)], [0.9, 0.6])
    assert not match_detections(far_below, suppressed, cutoff=0.001, nms_iou=0.7)


def test_a_flip_one_step_on_is_explained_by_the_first() -> None:
    # A sits at the threshold of the top box: kept on one side, suppressed on the other. B, which
    # A suppresses well above the threshold, is therefore kept on the second side only.
    top = [0.0, 0.0, 10.0, 10.0]
    a_box = box_at_iou(0.6999)
    shift = 10 * (1 - 0.8) / (1 + 0.8)  # B overlaps A at 0.8, the top box at about 0.55
    b_box = [a_box[0] + shift, 0.0, a_box[2] + shift, 10.0]
    with_a = dets([top, a_box], [0.9, 0.6])
    with_b = dets([top, b_box], [0.9, 0.5])
    assert match_detections(with_a, with_b, cutoff=0.001, nms_iou=0.7)
    # B alone, with nothing on the other side to explain it, is a real difference.
    assert not match_detections(dets([top], [0.9]), with_b, cutoff=0.001, nms_iou=0.7)
