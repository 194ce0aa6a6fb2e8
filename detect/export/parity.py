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
    reference: Detections,
    other: Detections,
    cutoff: float,
    score_tol: float = 1e-4,
    iou: float = 0.99,
    nms_iou: float | None = None,
    iou_tol: float = 1e-3,
) -> bool:
    """Whether two images' detections are the same: label, score within ``score_tol``, box IoU >= ``iou``.

    A detection may be on one side only where float noise can decide either way:

    - its score is within ``score_tol`` of ``cutoff``, the lowest score a detection can have and be
      kept (the score threshold, or the last score kept when ``max_det`` cut the list);
    - with ``nms_iou`` given, NMS dropped it on the other side for a same-label detection there
      that overlaps it at ``nms_iou`` within ``iou_tol`` (a suppression at the threshold), or for
      one that is itself on that side only (the same flip, one step on).
    """
    pairs = _pairs(reference, other, score_tol, iou)
    ref_only = [i for i in range(len(reference)) if i not in pairs]
    other_only = [j for j in range(len(other)) if j not in pairs.values()]
    for side, rest, only, rest_only in (
        (reference, other, ref_only, other_only),
        (other, reference, other_only, ref_only),
    ):
        for index in only:
            if not _explained(index, side, rest, rest_only, cutoff, score_tol, nms_iou, iou_tol):
                return False
    return True


def _pairs(reference: Detections, other: Detections, score_tol: float, iou: float) -> dict[int, int]:
    """Reference index -> other index of the detections matched one to one, greedily by score."""
    if not len(reference) or not len(other):
        return {}
    overlaps = box_iou(reference.boxes.double(), other.boxes.double())
    same = (
        (reference.labels[:, None] == other.labels[None, :])
        & ((reference.scores[:, None] - other.scores[None, :]).abs() <= score_tol)
        & (overlaps >= iou)
    )
    used = torch.zeros(len(other), dtype=torch.bool)
    pairs = {}
    for i in range(len(reference)):
        candidates = (same[i] & ~used).nonzero().flatten()
        if len(candidates):
            used[candidates[0]] = True
            pairs[i] = int(candidates[0])
    return pairs


def _explained(
    index: int,
    side: Detections,
    rest: Detections,
    rest_only: list[int],
    cutoff: float,
    score_tol: float,
    nms_iou: float | None,
    iou_tol: float,
) -> bool:
    """Whether ``side``'s unmatched detection ``index`` is one that float noise could have dropped."""
    score = float(side.scores[index])
    if score <= cutoff + score_tol:
        return True
    if nms_iou is None or not len(rest):
        return False
    overlaps = box_iou(side.boxes[index : index + 1].double(), rest.boxes.double())[0]
    suppressors = (
        (rest.labels == side.labels[index])
        & (rest.scores >= score - score_tol)
        & (overlaps >= nms_iou - iou_tol)
    )
    at_threshold = suppressors & ((overlaps - nms_iou).abs() <= iou_tol)
    flipped = torch.zeros_like(suppressors)
    flipped[rest_only] = True
    return bool((at_threshold | (suppressors & flipped)).any())


def cutoff_of(detections: list[Detections], score_thresh: float, max_det: int) -> list[float]:
    """The ``cutoff`` of :func:`match_detections` for each image."""
    return [float(d.scores.min()) if len(d) >= max_det else score_thresh for d in detections]
