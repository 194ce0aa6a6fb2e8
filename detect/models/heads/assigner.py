"""Task-aligned label assignment (Feng et al., TOOD, 2021), vectorised over the batch."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["Assignment", "TaskAlignedAssigner", "pairwise_box_iou"]


@dataclass
class Assignment:
    """Training targets for every anchor.

    Attributes:
        foreground: ``(B, A)`` bool, anchors assigned to an object.
        boxes: ``(B, A, 4)`` xyxy target boxes (meaningful where ``foreground``).
        scores: ``(B, A, C)`` soft class targets: the normalised alignment at the assigned class.
        gt_index: ``(B, A)`` index of the assigned ground truth within its image.
    """

    foreground: Tensor
    boxes: Tensor
    scores: Tensor
    gt_index: Tensor


def pairwise_box_iou(boxes1: Tensor, boxes2: Tensor, eps: float = 1e-7) -> Tensor:
    """IoU of ``(B, M, 4)`` against ``(B, A, 4)`` xyxy boxes, giving ``(B, M, A)``."""
    b1 = boxes1.unsqueeze(2)
    b2 = boxes2.unsqueeze(1)
    inter_wh = (torch.minimum(b1[..., 2:], b2[..., 2:]) - torch.maximum(b1[..., :2], b2[..., :2])).clamp(
        min=0
    )
    inter = inter_wh[..., 0] * inter_wh[..., 1]
    area1 = (b1[..., 2] - b1[..., 0]) * (b1[..., 3] - b1[..., 1])
    area2 = (b2[..., 2] - b2[..., 0]) * (b2[..., 3] - b2[..., 1])
    return inter / (area1 + area2 - inter + eps)


class TaskAlignedAssigner:
    """Assign each object the ``topk`` anchors inside it with the best ``score**alpha * iou**beta``.

    An anchor claimed by several objects goes to the one it overlaps most. The class target of a
    positive anchor is its alignment, normalised so that each object's best anchor gets that
    object's best IoU: classification learns to rank boxes by localisation quality.

    Args:
        topk: candidate anchors per object.
        alpha: exponent of the classification score in the alignment metric.
        beta: exponent of the IoU in the alignment metric.
    """

    def __init__(self, topk: int = 10, alpha: float = 0.5, beta: float = 6.0, eps: float = 1e-9) -> None:
        if topk < 1:
            raise ValueError(f"topk must be >= 1, got {topk}")
        self.topk = topk
        self.alpha = alpha
        self.beta = beta
        self.eps = eps

    @torch.no_grad()
    def __call__(
        self,
        pred_scores: Tensor,
        pred_boxes: Tensor,
        anchors: Tensor,
        gt_labels: Tensor,
        gt_boxes: Tensor,
        gt_valid: Tensor,
    ) -> Assignment:
        """Assign targets.

        Args:
            pred_scores: ``(B, A, C)`` sigmoid class scores.
            pred_boxes: ``(B, A, 4)`` decoded xyxy boxes.
            anchors: ``(A, 2)`` anchor centres in pixels.
            gt_labels: ``(B, M)`` class indices (padding entries arbitrary).
            gt_boxes: ``(B, M, 4)`` xyxy boxes.
            gt_valid: ``(B, M)`` bool, False for padding.
        """
        batch_size, num_anchors, num_classes = pred_scores.shape
        num_gt = gt_boxes.shape[1]
        device = pred_scores.device
        if num_gt == 0:
            return Assignment(
                torch.zeros((batch_size, num_anchors), dtype=torch.bool, device=device),
                torch.zeros((batch_size, num_anchors, 4), device=device),
                torch.zeros_like(pred_scores),
                torch.zeros((batch_size, num_anchors), dtype=torch.long, device=device),
            )
        pred_scores = pred_scores.float()
        pred_boxes = pred_boxes.float()
        # (B, M, A): anchor centre strictly inside the object box.
        corner_gap = torch.cat(
            [anchors[None, None] - gt_boxes[:, :, None, :2], gt_boxes[:, :, None, 2:] - anchors[None, None]],
            dim=-1,
        )
        inside = (corner_gap.amin(dim=-1) > self.eps) & gt_valid[..., None]

        ious = pairwise_box_iou(gt_boxes, pred_boxes).clamp(min=0) * inside
        class_index = gt_labels.clamp(min=0).unsqueeze(-1).expand(-1, -1, num_anchors)
        class_scores = pred_scores.transpose(1, 2).gather(1, class_index)
        alignment = class_scores.pow(self.alpha) * ious.pow(self.beta) * inside

        topk = min(self.topk, num_anchors)
        # The tiny bonus breaks ties among zero alignments (early training) in favour of inside anchors.
        top_index = (alignment + inside * 1e-12).topk(topk, dim=-1).indices
        candidates = torch.zeros_like(inside).scatter_(-1, top_index, True)
        positive = candidates & inside

        # An anchor claimed by several objects keeps only the one it overlaps most.
        claims = positive.sum(dim=1, keepdim=True)
        best_gt = F.one_hot(ious.argmax(dim=1), num_gt).transpose(1, 2).bool()
        positive = torch.where(claims > 1, best_gt & inside, positive)

        foreground = positive.any(dim=1)
        gt_index = positive.to(torch.uint8).argmax(dim=1)
        boxes = gt_boxes.gather(1, gt_index.unsqueeze(-1).expand(-1, -1, 4))
        labels = gt_labels.gather(1, gt_index)

        alignment = alignment * positive
        best_alignment = alignment.amax(dim=-1, keepdim=True)
        best_iou = (ious * positive).amax(dim=-1, keepdim=True)
        quality = (alignment * best_iou / (best_alignment + self.eps)).amax(dim=1)
        scores = F.one_hot(labels.clamp(min=0), num_classes).to(pred_scores.dtype)
        scores = scores * (quality * foreground).unsqueeze(-1)
        return Assignment(foreground, boxes, scores, gt_index)
