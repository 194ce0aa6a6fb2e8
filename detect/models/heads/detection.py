"""Anchor-free decoupled box head: task-aligned assignment, CIoU, DFL or direct distances (TOOD, YOLOv8)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import complete_box_iou_loss

from detect.models.heads.assigner import Assignment, TaskAlignedAssigner
from detect.models.heads.base import Head, make_anchors
from detect.models.heads.postprocess import Decoded, PostprocessConfig, finalize
from detect.models.layers import conv_bn_act, separable_pair
from detect.models.losses import distribution_focal_loss
from detect.models.necks.base import select_specs
from detect.structures import Detections, FeatureSpec, Targets

__all__ = ["BRANCH_KINDS", "DetectHead", "DetectOutputs", "pad_targets"]

BRANCH_KINDS = ("conv", "separable")
# Side distance, in strides, that a direct-regression head (reg_max=1) predicts before training.
INITIAL_DISTANCE = 2.5


@dataclass
class DetectOutputs:
    """Raw head outputs over all ``A`` anchors of all levels.

    Attributes:
        cls_logits: ``(B, A, C)``.
        box_logits: ``(B, A, 4, R)`` logits over ``R`` distance bins for left, top, right, bottom.
        anchors: ``(A, 2)`` anchor centres in pixels.
        strides: ``(A, 1)``.
    """

    cls_logits: Tensor
    box_logits: Tensor
    anchors: Tensor
    strides: Tensor


def pad_targets(targets: list[Targets], device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
    """Stack per-image targets into ``(B, M, 4)`` boxes, ``(B, M)`` labels and a ``(B, M)`` validity mask."""
    counts = torch.tensor([len(t) for t in targets], device=device)
    max_count = int(counts.max()) if len(targets) else 0
    boxes = torch.zeros((len(targets), max_count, 4), device=device)
    labels = torch.zeros((len(targets), max_count), dtype=torch.long, device=device)
    if max_count:
        boxes = nn.utils.rnn.pad_sequence([t.boxes.float() for t in targets], batch_first=True)
        labels = nn.utils.rnn.pad_sequence([t.labels for t in targets], batch_first=True)
    valid = torch.arange(max_count, device=device)[None] < counts[:, None]
    return boxes.to(device), labels.to(device), valid


class DetectHead(Head):
    """Per-level decoupled convolutional branches for classification and box distribution.

    Args:
        in_specs: the neck's ``out_specs`` and the backbone levels the neck leaves out.
        num_classes: number of object classes.
        in_features: levels to predict on.
        reg_max: distance bins per box side; the largest side distance is ``(reg_max - 1) * stride``.
            ``1``: no distribution; each side's distance is ``softplus(logit) * stride``, learnt
            with an L1 term (``loss_dist``) in place of the DFL: four outputs per anchor instead
            of ``4 * reg_max``, which lets the box branch be narrow (16 wide by default).
        box_hidden: width of the box branch (default derived from the finest level).
        cls_hidden: width of the class branch (default derived from the finest level).
        box_branch, cls_branch: ``"conv"``: two 3x3 convolutions per branch; ``"separable"``: two
            depthwise 3x3 + pointwise 1x1 pairs, about a ninth of the arithmetic.
        topk, alpha, beta: task-aligned assigner settings.
        box_weight, cls_weight, dfl_weight: loss weights (``dfl_weight`` weighs the L1 distance term
            when ``reg_max=1``).
        score_thresh: minimum score kept by ``postprocess``.
        nms_iou: IoU threshold of the class-wise NMS.
        max_det: detections kept per image.
        pre_nms_topk: candidates entering NMS per image.
        pred_init: ``"default"``: PyTorch's random init for the last 1x1 conv of every branch;
            ``"zero"``: zero weights there, so every anchor starts with the same scores and boxes
            and the first assignments depend on the anchors' positions only, not on the seed.
    """

    def __init__(
        self,
        in_specs: dict[str, FeatureSpec],
        num_classes: int,
        in_features: tuple[str, ...] | list[str] = ("p3", "p4", "p5"),
        reg_max: int = 16,
        box_hidden: int | None = None,
        cls_hidden: int | None = None,
        box_branch: str = "conv",
        cls_branch: str = "conv",
        topk: int = 10,
        alpha: float = 0.5,
        beta: float = 6.0,
        box_weight: float = 7.5,
        cls_weight: float = 0.5,
        dfl_weight: float = 1.5,
        score_thresh: float = 0.001,
        nms_iou: float = 0.7,
        max_det: int = 300,
        pre_nms_topk: int = 1000,
        pred_init: str = "default",
    ) -> None:
        super().__init__()
        if pred_init not in ("default", "zero"):
            raise ValueError(f"pred_init must be 'default' or 'zero', got {pred_init!r}")
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        if reg_max < 1:
            raise ValueError(f"reg_max must be >= 1, got {reg_max}")
        for name, value in (("box_branch", box_branch), ("cls_branch", cls_branch)):
            if value not in BRANCH_KINDS:
                raise ValueError(f"{name} must be one of {BRANCH_KINDS}, got {value!r}")
        self.specs = select_specs(in_specs, in_features)
        self.in_features = list(in_features)
        self.num_classes = num_classes
        self.reg_max = reg_max
        finest = min(spec.channels for spec in self.specs)
        box_hidden = box_hidden or max(16, finest // 4, 4 * reg_max)
        cls_hidden = cls_hidden or max(finest, min(num_classes, 100))
        self.box_branches = self.make_branches(box_hidden, 4 * reg_max, box_branch)
        self.cls_branches = self.make_branches(cls_hidden, num_classes, cls_branch)
        self.assigner = TaskAlignedAssigner(topk, alpha, beta)
        self.box_weight, self.cls_weight, self.dfl_weight = box_weight, cls_weight, dfl_weight
        self.score_thresh, self.nms_iou = score_thresh, nms_iou
        self.max_det, self.pre_nms_topk = max_det, pre_nms_topk
        self.register_buffer("bins", torch.arange(reg_max, dtype=torch.float32), persistent=False)
        self._init_biases()
        if pred_init == "zero":
            for branch in (*self.box_branches, *self.cls_branches):
                nn.init.zeros_(branch[-1].weight)

    def make_branches(self, hidden_channels: int, out_channels: int, kind: str = "conv") -> nn.ModuleList:
        """One branch per level, then a 1x1 conv to ``out_channels``.

        ``kind="conv"``: two 3x3 conv-BN-SiLU; ``"separable"``: two (depthwise 3x3, pointwise 1x1)
        conv-BN-SiLU pairs, the same receptive field for far less arithmetic at the finest level.
        """
        branches = []
        for spec in self.specs:
            if kind == "separable":
                layers = [
                    *separable_pair(spec.channels, hidden_channels),
                    *separable_pair(hidden_channels, hidden_channels),
                ]
            else:
                layers = [
                    conv_bn_act(spec.channels, hidden_channels, 3),
                    conv_bn_act(hidden_channels, hidden_channels, 3),
                ]
            branches.append(nn.Sequential(*layers, nn.Conv2d(hidden_channels, out_channels, 1)))
        return nn.ModuleList(branches)

    def _init_biases(self) -> None:
        # Start near the prior of a handful of objects per 640 px image, so the first steps are not
        # spent pushing thousands of background scores down.
        for branch, spec in zip(self.cls_branches, self.specs):
            nn.init.constant_(branch[-1].bias, math.log(5 / self.num_classes / (640 / spec.stride) ** 2))
        for branch in self.box_branches:
            nn.init.constant_(branch[-1].bias, self.initial_box_bias)

    @property
    def initial_box_bias(self) -> float:
        """The box branches' starting bias: equal bin logits put the expected distance mid-range;
        a direct distance starts at softplus(2.42) = 2.5 strides, a box of mid size for its level."""
        return 1.0 if self.reg_max > 1 else math.log(math.expm1(INITIAL_DISTANCE))

    def forward(self, features: dict[str, Tensor]) -> DetectOutputs:
        sizes = [tuple(features[key].shape[-2:]) for key in self.in_features]
        cls_logits = self.run_branches(self.cls_branches, features)
        box_logits = self.run_branches(self.box_branches, features)
        box_logits = box_logits.reshape(*box_logits.shape[:2], 4, self.reg_max)
        anchors, strides = make_anchors(sizes, self.specs, cls_logits.device, torch.float32)
        return DetectOutputs(cls_logits, box_logits, anchors, strides)

    def run_branches(self, branches: nn.ModuleList, features: dict[str, Tensor]) -> Tensor:
        """Apply one branch per level and flatten to ``(B, A, C)`` over all anchors."""
        levels = [branch(features[key]) for key, branch in zip(self.in_features, branches)]
        # (B, C, H, W) -> (B, H * W, C): a view of a channels-last output, so only the concatenation copies.
        flat = [level.permute(0, 2, 3, 1).reshape(level.shape[0], -1, level.shape[1]) for level in levels]
        return torch.cat(flat, dim=1)

    def side_distances(self, box_logits: Tensor) -> Tensor:
        """``(..., 4)`` side distances in strides from ``(..., 4, R)`` logits."""
        if self.reg_max == 1:
            return F.softplus(box_logits.float().squeeze(-1))
        # A (R, 1) matrix, not the (R,) vector: exported, the vector's MatMul runs ONNX Runtime's slow
        # general path (1.0 of a 14 ms forward at 320 px); the column's is a plain GEMM (0.1 ms).
        return (box_logits.float().softmax(dim=-1) @ self.bins[:, None]).squeeze(-1)

    def decode_boxes(self, outputs: DetectOutputs) -> Tensor:
        """``(B, A, 4)`` xyxy pixel boxes: each side's expected bin (or direct distance) times the stride."""
        distances = self.side_distances(outputs.box_logits) * outputs.strides
        return torch.cat([outputs.anchors - distances[..., :2], outputs.anchors + distances[..., 2:]], dim=-1)

    def assign(self, outputs: DetectOutputs, targets: list[Targets]) -> tuple[Assignment, Tensor]:
        """Run the assigner; returns the assignment and the decoded predicted boxes."""
        pred_boxes = self.decode_boxes(outputs)
        gt_boxes, gt_labels, gt_valid = pad_targets(targets, outputs.cls_logits.device)
        assignment = self.assigner(
            outputs.cls_logits.detach().sigmoid(),
            pred_boxes.detach(),
            outputs.anchors,
            gt_labels,
            gt_boxes,
            gt_valid,
        )
        return assignment, pred_boxes

    def loss(self, outputs: DetectOutputs, targets: list[Targets]) -> dict[str, Tensor]:
        assignment, pred_boxes = self.assign(outputs, targets)
        return self.box_losses(outputs, assignment, pred_boxes)

    def box_losses(
        self, outputs: DetectOutputs, assignment: Assignment, pred_boxes: Tensor
    ) -> dict[str, Tensor]:
        """Classification (BCE on soft targets), CIoU and DFL terms for an assignment."""
        score_sum = assignment.scores.sum().clamp(min=1.0)
        loss_cls = (
            F.binary_cross_entropy_with_logits(outputs.cls_logits.float(), assignment.scores, reduction="sum")
            / score_sum
        )
        foreground = assignment.foreground
        weight = assignment.scores.sum(dim=-1)[foreground]
        loss_box = (
            complete_box_iou_loss(pred_boxes[foreground], assignment.boxes[foreground], reduction="none")
            * weight
        ).sum() / score_sum
        anchors = outputs.anchors.expand(foreground.shape[0], -1, -1)[foreground]
        strides = outputs.strides.expand(foreground.shape[0], -1, -1)[foreground]
        target_boxes = assignment.boxes[foreground]
        target_distances = (
            torch.cat([anchors - target_boxes[:, :2], target_boxes[:, 2:] - anchors], dim=-1) / strides
        )
        if self.reg_max == 1:
            side_loss = F.l1_loss(
                self.side_distances(outputs.box_logits[foreground]),
                target_distances.clamp(min=0),
                reduction="none",
            )
            dist_key = "loss_dist"
        else:
            target_distances = target_distances.clamp(0, self.reg_max - 1 - 0.01)
            side_loss = distribution_focal_loss(outputs.box_logits[foreground], target_distances)
            dist_key = "loss_dfl"
        loss_dist = (side_loss.mean(dim=-1) * weight).sum() / score_sum
        return {
            "loss_cls": loss_cls * self.cls_weight,
            "loss_box": loss_box * self.box_weight,
            dist_key: loss_dist * self.dfl_weight,
        }

    def decode(self, outputs: DetectOutputs) -> Decoded:
        """Boxes in input pixels and class probabilities over every anchor (traceable for export)."""
        return Decoded(boxes=self.decode_boxes(outputs), scores=outputs.cls_logits.float().sigmoid())

    @property
    def postprocess_config(self) -> PostprocessConfig:
        """The thresholds that turn :meth:`decode`'s output into detections."""
        return PostprocessConfig(
            score_thresh=self.score_thresh,
            nms_iou=self.nms_iou,
            max_det=self.max_det,
            pre_nms_topk=self.pre_nms_topk,
        )

    @torch.no_grad()
    def postprocess(self, outputs: DetectOutputs, image_sizes: list[tuple[int, int]]) -> list[Detections]:
        if len(set(image_sizes)) > 1:
            raise ValueError(f"a batch has one input size, got {sorted(set(image_sizes))}")
        return finalize(self.decode(outputs), image_sizes[0], self.postprocess_config)
