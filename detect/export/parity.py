"""Exported against eager: raw outputs within tolerance, and the same detections after decoding."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torchvision.ops import box_iou

from detect.structures import Detections

__all__ = ["ParityReport", "compare_outputs", "cutoff_of", "match_detections"]


@dataclass
class ParityReport:
    """How far an exported model is from the eager one on the same inputs.

    Attributes:
        errors: per output, the largest difference, absolute for values up to 1 and relative to
            the output's largest magnitude above that (boxes are in pixels, scores in [0, 1]).
        detections: images checked.
        mismatched: images whose detections differ (beyond score ties at the cut-offs).
    """

    errors: dict[str, float] = field(default_factory=dict)
    detections: int = 0
    mismatched: int = 0

    @property
    def max_error(self) -> float:
        return max(self.errors.values(), default=0.0)

    def passes(self, tolerance: float = 1e-4) -> bool:
        return self.max_error <= tolerance and self.mismatched == 0


def compare_outputs(reference: dict[str, torch.Tensor], other: dict[str, torch.Tensor]) -> dict[str, float]:
    """Largest scaled difference per output name (see :class:`ParityReport`)."""
    errors = {}
    for name, ref in reference.items():
        if name not in other:
            errors[name] = float("inf")
            continue
        value = other[name]
        if value.shape != ref.shape:
            errors[name] = float("inf")
            continue
        ref, value = ref.double(), value.double()
        scale = max(1.0, float(ref.abs().max())) if ref.numel() else 1.0
        errors[name] = float((ref - value).abs().max()) / scale if ref.numel() else 0.0
    return errors


def match_detections(
    reference: Detections, other: Detections, cutoff: float, score_tol: float = 1e-4, iou: float = 0.99
) -> bool:
    """Whether two images' detections are the same: label, score within ``score_tol``, box IoU >= ``iou``.

    A detection may be missing from one side only when its score is within ``score_tol`` of
    ``cutoff``, the lowest score a detection can have and be kept (the score threshold, or the
    last score kept when ``max_det`` cut the list): a tie that float noise can order either way.
    """
    used = torch.zeros(len(other), dtype=torch.bool)
    if len(reference) and len(other):
        overlaps = box_iou(reference.boxes.double(), other.boxes.double())
        same = (
            (reference.labels[:, None] == other.labels[None, :])
            & ((reference.scores[:, None] - other.scores[None, :]).abs() <= score_tol)
            & (overlaps >= iou)
        )
    for i in range(len(reference)):
        candidates = (same[i] & ~used).nonzero().flatten() if len(other) else []
        if len(candidates):
            used[candidates[0]] = True
        elif float(reference.scores[i]) > cutoff + score_tol:
            return False
    return bool((other.scores[~used] <= cutoff + score_tol).all())


def cutoff_of(detections: list[Detections], score_thresh: float, max_det: int) -> list[float]:
    """The ``cutoff`` of :func:`match_detections` for each image."""
    return [float(d.scores.min()) if len(d) >= max_det else score_thresh for d in detections]
