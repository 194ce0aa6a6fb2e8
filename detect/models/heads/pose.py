"""Keypoints: per-anchor regression with visibility and an OKS-based loss (YOLO-Pose style), then local refinement."""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import partial

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import Conv2dNormActivation

from detect.models.heads.assigner import Assignment
from detect.models.heads.detection import DetectHead, DetectOutputs, pad_targets
from detect.models.heads.keypoint_refine import KeypointRefiner
from detect.models.heads.postprocess import Decoded, PostprocessConfig, RefineStep
from detect.models.layers import conv_bn_act, scale_grad
from detect.structures import FeatureSpec, KeypointInfo, Targets

__all__ = ["PoseHead", "PoseOutputs"]


@dataclass
class PoseOutputs(DetectOutputs):
    """Detect outputs plus ``keypoint_logits`` ``(B, A, K, 3)``: x, y offsets and a visibility logit.

    ``refine_heatmaps`` are the keypoint refiner's heatmaps (``None`` without refinement).
    """

    keypoint_logits: Tensor | None = None
    refine_heatmaps: Tensor | None = None


class PoseHead(DetectHead):
    """The detect head plus a keypoint branch per level.

    A keypoint is ``centre + raw * size`` of a box: the ground-truth box in training, the box the
    same anchor predicts (detached) at prediction. The branch thus learns a pose in units of the
    object rather than pixel offsets that differ by two orders of magnitude between a small and a
    large person. The loss per labelled keypoint is ``1 - OKS`` (COCO's object keypoint similarity
    with the dataset's sigmas and the object's segment area) plus an L1 distance in units of the
    object's size, with a visibility BCE, on the anchors the box assignment made positive for
    objects with keypoints. Its gradient reaches the shared features scaled by ``feature_grad``.
    A :class:`KeypointRefiner` then moves each keypoint to the soft-argmax of a heatmap computed
    from the finest level the head gets (the backbone's stride-4 ``p2`` where it returns one;
    without training it), read in a window around it, trained on the same loss plus a heatmap
    term; the regression places the pose, the refiner the last few pixels.

    Args:
        in_specs: the neck's ``out_specs`` and the backbone levels the neck leaves out.
        num_classes: number of object classes.
        keypoints: names, skeleton and OKS sigmas, read from the dataset's categories.
        keypoint_weight: weight of the keypoint term.
        distance_weight: weight, inside the keypoint term, of the size-normalised L1 distance added
            to ``1 - OKS``.
        visibility_weight: weight of the visibility term.
        keypoint_hidden: width of the keypoint branch (default: the finest level's channels).
        share_levels: one keypoint tower for all levels (after a 1x1 projection per level, with
            GroupNorm since the levels' statistics differ): box-relative keypoints mean the same
            at every scale, so every person trains the same weights, instead of a third of them
            each.
        feature_grad: factor on the keypoint loss's gradient into the shared features (1: plain
            multi-task; below 1 lets boxes shape the features while the keypoint branch still
            learns at the full rate).
        refine_steps: residual refinements of the regressed keypoints from the finest level
            (:class:`KeypointRefiner`); 0 turns refinement off.
        refine_channels: width of the refiner's feature tower (two 3x3 convolutions, then a 1x1 to
            the heatmaps) on the finest level.
        refine_window: half-size of the window the refiner reads around a keypoint, as a fraction
            of ``sqrt(w * h)`` of the object's box.
        refine_patch: samples per side of the grid the refiner reads in that window.
        refine_upsample: the refiner's heatmaps are this many times finer than the level it reads.
        heatmap_weight: weight of the refiner's heatmap term (:meth:`KeypointRefiner.heatmap_loss`),
            which trains each grid point of its window towards a Gaussian around the true keypoint.
        refine_level: the level the refiner reads; default: the finest the head gets, which is the
            backbone's stride-4 ``p2`` where the backbone returns it (the neck leaves it out) and
            the neck's finest level otherwise.
        refine_context: coarser levels (e.g. the neck's ``p3``), upsampled to ``refine_level`` and
            joined to its channels as the refiner's input: a stride-4 map shows where lines end,
            not whose hand an end is; a coarser level sees the whole figure. Read without
            training them, like ``refine_level``.
        refine_tower: the refiner's tower, ``"conv"`` or ``"separable"`` (:class:`KeypointRefiner`).
        **kwargs: :class:`DetectHead` arguments.
    """

    target_fields = ("keypoints",)

    def __init__(
        self,
        in_specs: dict[str, FeatureSpec],
        num_classes: int,
        keypoints: KeypointInfo | None = None,
        keypoint_weight: float = 3.0,
        distance_weight: float = 1.0,
        visibility_weight: float = 1.0,
        keypoint_hidden: int | None = None,
        share_levels: bool = False,
        feature_grad: float = 0.1,
        refine_steps: int = 2,
        refine_channels: int = 32,
        refine_window: float = 0.15,
        refine_patch: int = 7,
        refine_upsample: int = 1,
        heatmap_weight: float = 1.0,
        refine_level: str | None = None,
        refine_context: str | list[str] | None = None,
        refine_tower: str = "conv",
        **kwargs,
    ) -> None:
        super().__init__(in_specs, num_classes, **kwargs)
        if keypoints is None or len(keypoints) == 0:
            raise ValueError(
                "head=pose needs a dataset whose categories declare keypoints (COCO 'keypoints' list)"
            )
        self.keypoint_info = keypoints
        self.num_keypoints = len(keypoints)
        # Wider than the box branch: a pose is many more numbers than four box sides.
        hidden = keypoint_hidden or max(min(spec.channels for spec in self.specs), 3 * self.num_keypoints)
        self.share_levels = share_levels
        if share_levels:
            self.keypoint_inputs = nn.ModuleList(conv_bn_act(spec.channels, hidden, 1) for spec in self.specs)
            self.keypoint_tower = nn.Sequential(
                *(
                    Conv2dNormActivation(
                        hidden,
                        hidden,
                        3,
                        norm_layer=partial(nn.GroupNorm, _groups(hidden)),
                        activation_layer=nn.SiLU,
                    )
                    for _ in range(2)
                ),
                nn.Conv2d(hidden, 3 * self.num_keypoints, 1),
            )
        else:
            self.keypoint_branches = self.make_branches(hidden, 3 * self.num_keypoints)
        self.register_buffer("sigmas", torch.tensor(keypoints.sigmas, dtype=torch.float32), persistent=False)
        self.keypoint_weight = keypoint_weight
        self.distance_weight = distance_weight
        self.visibility_weight = visibility_weight
        self.heatmap_weight = heatmap_weight
        if not 0 <= feature_grad <= 1:
            raise ValueError(f"feature_grad must be in [0, 1], got {feature_grad}")
        self.feature_grad = feature_grad
        if refine_level is None:
            refine_level = min(in_specs, key=lambda key: in_specs[key].stride)
        if refine_level not in in_specs:
            raise ValueError(
                f"refine_level {refine_level!r} is not among the levels the head gets: {sorted(in_specs)}; "
                "add it to the backbone's out_features"
            )
        self.refine_level, self.refine_stride = refine_level, in_specs[refine_level].stride
        refine_channels_in = in_specs[refine_level].channels
        if isinstance(refine_context, str):
            refine_context = [refine_context]
        self.refine_context: dict[str, int] = {}
        for level in refine_context or ():
            if level not in in_specs:
                raise ValueError(
                    f"refine_context {level!r} is not among the levels the head gets: {sorted(in_specs)}"
                )
            ratio = in_specs[level].stride / self.refine_stride
            if ratio <= 1 or ratio != int(ratio):
                raise ValueError(
                    f"refine_context {level!r} (stride {in_specs[level].stride}) must be coarser than "
                    f"refine_level {refine_level!r} (stride {self.refine_stride}) by a whole factor"
                )
            self.refine_context[level] = int(ratio)
            refine_channels_in += in_specs[level].channels
        self.refiner = (
            KeypointRefiner(
                refine_channels_in,
                self.num_keypoints,
                channels=refine_channels,
                steps=refine_steps,
                patch=refine_patch,
                window=refine_window,
                upsample=refine_upsample,
                tower=refine_tower,
            )
            if refine_steps > 0
            else None
        )

    def forward(self, features: dict[str, Tensor]) -> PoseOutputs:
        base = super().forward(features)
        if self.feature_grad < 1:
            features = {key: scale_grad(value, self.feature_grad) for key, value in features.items()}
        if self.share_levels:
            levels = [
                self.keypoint_tower(project(features[key])).flatten(2)
                for key, project in zip(self.in_features, self.keypoint_inputs)
            ]
            raw = torch.cat(levels, dim=2).transpose(1, 2)
        else:
            raw = self.run_branches(self.keypoint_branches, features)
        refine_heatmaps = None
        if self.refiner is not None:
            # The refiner reads the shared features but does not train them: with its soft-argmax
            # gradient in them (even at feature_grad), one run of three lost its detection (bbox AP
            # 0.28). A detached run has collapsed once since, so the detach may not be the whole cure.
            fine = features[self.refine_level].detach()
            inputs = [fine]
            for level, scale in self.refine_context.items():
                context = F.interpolate(features[level].detach(), scale_factor=scale, mode="nearest")
                inputs.append(context[..., : fine.shape[-2], : fine.shape[-1]])
            fine = torch.cat(inputs, dim=1) if len(inputs) > 1 else fine
            refine_heatmaps = self.refiner.tower(fine)
        return PoseOutputs(
            base.cls_logits,
            base.box_logits,
            base.anchors,
            base.strides,
            keypoint_logits=raw.reshape(*raw.shape[:2], self.num_keypoints, 3),
            refine_heatmaps=refine_heatmaps,
        )

    def refine(
        self, outputs: PoseOutputs, keypoints: Tensor, image_index: Tensor, boxes: Tensor
    ) -> list[RefineStep]:
        """The refiner's steps from ``(N, K, 2)`` keypoints (none without a refiner)."""
        if self.refiner is None:
            return []
        return self.refiner.run(outputs.refine_heatmaps, self.refine_stride, keypoints, image_index, boxes)

    def decode_keypoints(self, outputs: PoseOutputs, boxes: Tensor | None = None) -> Tensor:
        """``(B, A, K, 2)`` keypoint positions in input pixels, in the frame of each anchor's box.

        Args:
            boxes: ``(B, A, 4)`` decoded boxes, if the caller has them already.
        """
        if boxes is None:
            boxes = self.decode_boxes(outputs)
        boxes = boxes.detach()
        keypoints = _in_box(outputs.keypoint_logits[..., :2].float(), boxes, outputs.strides)
        if self.refiner is None:
            return keypoints
        batch, anchors = keypoints.shape[:2]
        image_index = torch.arange(batch, device=keypoints.device).repeat_interleave(anchors)
        steps = self.refine(outputs, keypoints.flatten(0, 1), image_index, boxes.flatten(0, 1))
        return steps[-1].keypoints.reshape_as(keypoints)

    def loss(self, outputs: PoseOutputs, targets: list[Targets]) -> dict[str, Tensor]:
        assignment, pred_boxes = self.assign(outputs, targets)
        losses = self.box_losses(outputs, assignment, pred_boxes)
        losses.update(self.keypoint_losses(outputs, targets, assignment))
        return losses

    def keypoint_losses(
        self, outputs: PoseOutputs, targets: list[Targets], assignment: Assignment
    ) -> dict[str, Tensor]:
        if any(t.keypoints is None for t in targets):
            raise ValueError(
                "PoseHead needs Targets.keypoints; load the data with keypoints (data.request_targets)"
            )
        if not assignment.foreground.any() or max(len(t) for t in targets) == 0:
            return self._no_keypoint_losses(outputs)
        gt_keypoints = nn.utils.rnn.pad_sequence([t.keypoints.float() for t in targets], batch_first=True)
        gt_boxes, _, _ = pad_targets(targets, gt_keypoints.device)
        batch_index, anchor_index = assignment.foreground.nonzero(as_tuple=True)
        gt_index = assignment.gt_index[batch_index, anchor_index]
        target = gt_keypoints[batch_index, gt_index]  # (P, K, 3)
        labelled = target[..., 2] > 0
        has_keypoints = labelled.any(dim=1)
        if not has_keypoints.any():
            return self._no_keypoint_losses(outputs)
        target, labelled = target[has_keypoints], labelled[has_keypoints]
        batch_index, anchor_index = batch_index[has_keypoints], anchor_index[has_keypoints]
        boxes = gt_boxes[batch_index, gt_index[has_keypoints]]
        if all(t.areas is not None for t in targets):
            # The segment area COCO scores with, so training and evaluation share one tolerance.
            areas = nn.utils.rnn.pad_sequence([t.areas.float() for t in targets], batch_first=True)
            area = areas[batch_index, gt_index[has_keypoints]].clamp(min=1.0)
        else:
            area = ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])).clamp(min=1.0)
        # Trained in the frame of the ground-truth box: the targets then stay put while the predicted
        # boxes are still wild, which early on made the keypoint gradient 50x the box gradient.
        # Prediction uses the anchor's own box, close to the ground truth by the time it scores.
        raw = outputs.keypoint_logits[batch_index, anchor_index, :, :2].float()
        predicted = _in_box(raw, boxes, outputs.strides[anchor_index])
        # The coarse estimate and every refinement step are scored alike: the regression still has
        # to bring each keypoint within the refiner's reach.
        steps = self.refine(outputs, predicted, batch_index, boxes)
        stages = [predicted, *(step.keypoints for step in steps)]
        scale = ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])).clamp(min=1.0).sqrt()
        loss_keypoint = sum(self._keypoint_loss(stage, target, labelled, area, scale) for stage in stages)
        visibility_logits = outputs.keypoint_logits[batch_index, anchor_index, :, 2].float()
        loss_visibility = F.binary_cross_entropy_with_logits(visibility_logits, labelled.float())
        losses = {
            "loss_keypoint": loss_keypoint * self.keypoint_weight,
            "loss_visibility": loss_visibility * self.visibility_weight,
        }
        if self.refiner is not None:
            losses["loss_heatmap"] = self.refiner.heatmap_loss(steps, target, labelled) * self.heatmap_weight
        return losses

    def _no_keypoint_losses(self, outputs: PoseOutputs) -> dict[str, Tensor]:
        """Zero losses that still reach every keypoint parameter (DDP expects each one in the graph)."""
        zero = outputs.keypoint_logits.sum() * 0.0
        losses = {"loss_keypoint": zero, "loss_visibility": zero}
        if self.refiner is not None:
            losses["loss_heatmap"] = zero + sum(p.sum() for p in self.refiner.parameters()) * 0.0
        return losses

    def _keypoint_loss(
        self, predicted: Tensor, target: Tensor, labelled: Tensor, area: Tensor, scale: Tensor
    ) -> Tensor:
        """Mean over objects of ``1 - OKS`` plus the size-normalised L1 distance, labelled keypoints only."""
        distance2 = (predicted - target[..., :2]).pow(2).sum(dim=-1)
        # COCO's OKS: exp(-d^2 / (2 * s^2 * k^2)) with s^2 the object area and k = 2 * sigma.
        similarity = torch.exp(-distance2 / (2 * area[:, None] * (2 * self.sigmas) ** 2 + 1e-9))
        # OKS alone has no gradient while a prediction is still far off (exp underflows), which is
        # most of a short run for small objects; an L1 distance in units of the object's size keeps
        # pulling until OKS takes over.
        distance = distance2.clamp(min=1e-9).sqrt() / scale[:, None]
        per_keypoint = (1 - similarity) + self.distance_weight * distance
        # Normalise by how many keypoints are labelled, so sparsely labelled objects still count.
        factor = self.num_keypoints / labelled.sum(dim=1).clamp(min=1)
        return (factor * (per_keypoint * labelled).mean(dim=1)).mean()

    def decode(self, outputs: PoseOutputs) -> Decoded:
        """Boxes, scores, and every anchor's keypoints before refinement with their visibility.

        Refinement reads windows around the keypoints of the detections that survive selection
        (:func:`~detect.models.heads.postprocess.finish`); running it on every anchor would cost
        more than the network.
        """
        decoded = super().decode(outputs)
        logits = outputs.keypoint_logits.float()
        positions = _in_box(logits[..., :2], decoded.boxes, outputs.strides)
        decoded.keypoints = torch.cat([positions, logits[..., 2:].sigmoid()], dim=-1)
        if self.refiner is not None:
            decoded.heatmaps = outputs.refine_heatmaps.float()
        return decoded

    @property
    def postprocess_config(self) -> PostprocessConfig:
        refine = self.refiner.config(self.refine_stride) if self.refiner is not None else None
        return replace(super().postprocess_config, refine=refine)


def _in_box(raw: Tensor, boxes: Tensor, strides: Tensor) -> Tensor:
    """Keypoints ``centre + raw * size`` of ``(..., 4)`` boxes; ``raw`` is ``(..., K, 2)``.

    Sizes are at least one stride, so a collapsed box still lets keypoints move.
    """
    centre = (boxes[..., :2] + boxes[..., 2:]) / 2
    size = (boxes[..., 2:] - boxes[..., :2]).maximum(strides)
    return centre[..., None, :] + raw * size[..., None, :]


def _groups(channels: int) -> int:
    """The largest of 16, 8, 4, 2, 1 groups that divides ``channels``."""
    return next(groups for groups in (16, 8, 4, 2, 1) if channels % groups == 0)
