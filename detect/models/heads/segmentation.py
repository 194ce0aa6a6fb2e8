"""Instance segmentation: prototype masks and per-instance coefficients (YOLACT), on the detect head."""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from detect.models.heads.assigner import Assignment
from detect.models.heads.detection import DetectHead, DetectOutputs, pad_targets
from detect.models.heads.postprocess import (
    Decoded,
    PostprocessConfig,
    box_columns_and_rows,
    crop_to_boxes,
)
from detect.models.layers import conv_bn_act, scale_grad
from detect.structures import FeatureSpec, Targets

__all__ = ["SegmentHead", "SegmentOutputs", "crop_to_boxes"]


@dataclass
class SegmentOutputs(DetectOutputs):
    """Detect outputs plus ``mask_coefs`` ``(B, A, P)`` and ``protos`` ``(B, P, H/4, W/4)``."""

    mask_coefs: Tensor | None = None
    protos: Tensor | None = None


def finest_stride(specs: list[FeatureSpec]) -> int:
    return min(spec.stride for spec in specs)


class DetailPrototypes(nn.Module):
    """Prototypes at a finer backbone level's stride: the coarse branch, upsampled, plus that level.

    The coarse level carries what the object is; the fine level (the backbone's stride-4 ``p2``,
    which the neck never reads) carries where its edges are. Its channels are kept narrow because
    every conv here runs at four times the coarse level's pixels.
    """

    def __init__(
        self, coarse: FeatureSpec, detail: FeatureSpec, channels: int, num_protos: int, detail_grad: float
    ) -> None:
        super().__init__()
        if detail.stride >= coarse.stride or coarse.stride % detail.stride:
            raise ValueError(
                f"proto_level must be finer than {coarse.stride} px and divide it, got stride {detail.stride}"
            )
        width = max(detail.channels, 16)
        self.coarse = nn.Sequential(
            conv_bn_act(coarse.channels, channels, 3),
            conv_bn_act(channels, channels, 3),
            conv_bn_act(channels, width, 1),
            nn.Upsample(scale_factor=coarse.stride // detail.stride, mode="nearest"),
        )
        self.lateral = conv_bn_act(detail.channels, width, 1)
        self.fuse = nn.Sequential(conv_bn_act(width, width, 3), nn.Conv2d(width, num_protos, 1))
        self.detail_grad = detail_grad

    def forward(self, coarse: Tensor, detail: Tensor) -> Tensor:
        # The stem's features also feed every box: the mask loss reaches them scaled down.
        detail = scale_grad(detail, self.detail_grad)
        return self.fuse(self.coarse(coarse) + self.lateral(detail))


class SegmentHead(DetectHead):
    """The detect head plus a prototype branch on the finest level and a coefficient branch per level.

    A mask is ``sigmoid(coefficients @ prototypes)`` cropped to its box. The mask loss is computed at
    prototype resolution (stride 4) on the anchors the box assignment made positive.

    Args:
        in_specs: the neck's ``out_specs`` and the backbone levels the neck leaves out.
        num_classes: number of object classes.
        num_protos: prototype masks (and coefficients per anchor).
        proto_channels: width of the prototype branch (default: the finest level's channels).
        proto_upsample: factor from the finest level to the prototypes (1: stride 8, 2: stride 4).
        proto_level: a finer level the head gets (the backbone's ``p2``) to build the prototypes at
            its stride from the finest predicted level plus its own detail (``proto_upsample`` must
            then be 1); ``"auto"``: the next finer level where the head gets one and
            ``proto_upsample`` is 1, else ``None``; ``None``: prototypes from the finest predicted
            level alone.
        detail_grad: factor on the mask loss's gradient into ``proto_level`` (0: it only reads it).
        mask_weight: weight of the mask loss.
        mask_thresh: probability above which a pixel belongs to the mask.
        **kwargs: :class:`DetectHead` arguments.
    """

    target_fields = ("masks",)

    def __init__(
        self,
        in_specs: dict[str, FeatureSpec],
        num_classes: int,
        num_protos: int = 32,
        proto_channels: int | None = None,
        proto_upsample: int = 1,
        proto_level: str | None = None,
        detail_grad: float = 0.0,
        mask_weight: float = 6.0,
        mask_thresh: float = 0.5,
        **kwargs,
    ) -> None:
        super().__init__(in_specs, num_classes, **kwargs)
        if num_protos < 1:
            raise ValueError(f"num_protos must be >= 1, got {num_protos}")
        if proto_upsample not in (1, 2, 4) or finest_stride(self.specs) % proto_upsample:
            raise ValueError(
                f"proto_upsample must be 1, 2 or 4 (and divide the finest stride), got {proto_upsample}"
            )
        finest = self.specs[0]
        proto_channels = proto_channels or max(finest.channels, 32)
        self.proto_stride = finest.stride // proto_upsample
        self.proto_inputs = [self.in_features[0]]
        if proto_level == "auto":
            # Backbones that return no finer level (by default all but cspdarknet_*) keep the coarse prototypes.
            finer = [
                key
                for key, spec in in_specs.items()
                if spec.stride < finest.stride and finest.stride % spec.stride == 0
            ]
            proto_level = (
                max(finer, key=lambda key: in_specs[key].stride) if finer and proto_upsample == 1 else None
            )
        if proto_level is not None:
            if proto_level not in in_specs:
                raise ValueError(
                    f"proto_level {proto_level!r} is not among the levels the head gets: {sorted(in_specs)}; "
                    "a backbone returns p2 with backbone.out_features=[p2,p3,p4,p5]"
                )
            if proto_upsample != 1:
                raise ValueError("proto_level and proto_upsample > 1 exclude each other: pick one")
            if not 0 <= detail_grad <= 1:
                raise ValueError(f"detail_grad must be in [0, 1], got {detail_grad}")
            detail = in_specs[proto_level]
            self.protos = DetailPrototypes(finest, detail, proto_channels, num_protos, detail_grad)
            self.proto_stride = detail.stride
            self.proto_inputs.append(proto_level)
        else:
            # Convolutions run at the finest level's resolution and only the last 1x1 output is
            # upsampled; masks are then upsampled again to the image at inference.
            self.protos = nn.Sequential(
                conv_bn_act(finest.channels, proto_channels, 3),
                conv_bn_act(proto_channels, proto_channels, 3),
                nn.Conv2d(proto_channels, num_protos, 1),
                nn.Upsample(scale_factor=proto_upsample, mode="bilinear", align_corners=False)
                if proto_upsample > 1
                else nn.Identity(),
            )
        coef_hidden = max(min(spec.channels for spec in self.specs) // 4, num_protos)
        self.coef_branches = self.make_branches(coef_hidden, num_protos)
        self.mask_weight = mask_weight
        self.mask_thresh = mask_thresh

    def forward(self, features: dict[str, Tensor]) -> SegmentOutputs:
        base = super().forward(features)
        return SegmentOutputs(
            base.cls_logits,
            base.box_logits,
            base.anchors,
            base.strides,
            mask_coefs=self.run_branches(self.coef_branches, features),
            protos=self.protos(*(features[key] for key in self.proto_inputs)),
        )

    def loss(self, outputs: SegmentOutputs, targets: list[Targets]) -> dict[str, Tensor]:
        assignment, pred_boxes = self.assign(outputs, targets)
        losses = self.box_losses(outputs, assignment, pred_boxes)
        losses["loss_mask"] = self.mask_loss(outputs, targets, assignment) * self.mask_weight
        return losses

    def mask_loss(self, outputs: SegmentOutputs, targets: list[Targets], assignment: Assignment) -> Tensor:
        """Mean over positive anchors of the BCE inside the object's box, at prototype resolution."""
        protos = outputs.protos.float()
        proto_h, proto_w = protos.shape[-2:]
        foreground = assignment.foreground
        if not foreground.any():
            return (outputs.mask_coefs.sum() + protos.sum()) * 0.0
        if any(t.masks is None for t in targets):
            raise ValueError(
                "SegmentHead needs Targets.masks; load the data with masks (data.request_targets)"
            )
        # Area-average each image's masks down to the prototypes (soft targets at the edges) before
        # padding, so that no (B, M, H, W) float tensor is ever made at input resolution.
        gt_masks = nn.utils.rnn.pad_sequence(
            [F.adaptive_avg_pool2d(t.masks[None].float(), (proto_h, proto_w))[0] for t in targets],
            batch_first=True,
        )
        gt_boxes, _, _ = pad_targets(targets, protos.device)
        batch_index, anchor_index = foreground.nonzero(as_tuple=True)
        gt_index = assignment.gt_index[batch_index, anchor_index]
        coefs = outputs.mask_coefs[batch_index, anchor_index].float()
        # One matmul per image (positives come image by image from nonzero), so the prototypes are
        # never copied per positive and no image is padded to the most crowded one; unbind, not
        # indexing, so that the backward stacks the images' gradients once.
        per_image = protos.flatten(2).unbind(0)
        counts = foreground.sum(dim=1).tolist()
        logits = torch.cat(
            [part @ per_image[image] for image, part in enumerate(coefs.split(counts)) if counts[image]]
        )
        # Only the pixels whose centres fall inside the object's box count, and most boxes are small:
        # the loss is taken on those pixels alone rather than on a whole map per positive.
        boxes = gt_boxes[batch_index, gt_index] / self.proto_stride
        # The same pixels that crop_to_boxes keeps at inference.
        inside_x, inside_y = box_columns_and_rows(boxes, proto_h, proto_w)
        instance, ys, xs = (inside_y[:, :, None] & inside_x[:, None, :]).nonzero(as_tuple=True)
        pixel = ys * proto_w + xs
        area = proto_h * proto_w
        pixel_logits = logits.view(-1)[instance * area + pixel]
        pixel_target = gt_masks.view(-1)[
            (batch_index * gt_masks.shape[1] + gt_index)[instance] * area + pixel
        ]
        per_pixel = F.binary_cross_entropy_with_logits(pixel_logits, pixel_target, reduction="none")
        sums = per_pixel.new_zeros(len(batch_index)).index_add_(0, instance, per_pixel)
        sizes = (inside_x.sum(dim=1) * inside_y.sum(dim=1)).clamp(min=1)
        return (sums / sizes).mean()

    def decode(self, outputs: SegmentOutputs) -> Decoded:
        decoded = super().decode(outputs)
        decoded.mask_coefs, decoded.protos = outputs.mask_coefs.float(), outputs.protos.float()
        return decoded

    @property
    def postprocess_config(self) -> PostprocessConfig:
        return replace(super().postprocess_config, mask_thresh=self.mask_thresh)
