"""From decoded per-anchor outputs to detections: selection, NMS, masks and keypoint refinement.

A head's ``decode`` turns its raw outputs into :class:`Decoded` tensors over every anchor (boxes in
input pixels, class scores, and the per-anchor extras of masks and keypoints); everything after
that needs no weights, only the numbers in :class:`PostprocessConfig`. Split this way, the same
functions finish the predictions of the eager model, of an exported graph run by another runtime,
and, traced, the NMS-inside-the-graph variant of an export.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.ops import nms, roi_align

from detect.structures import Detections

__all__ = [
    "Decoded",
    "PostprocessConfig",
    "RefineConfig",
    "RefineStep",
    "Selection",
    "assemble_masks",
    "clip_boxes",
    "box_columns_and_rows",
    "crop_to_boxes",
    "finalize",
    "finish",
    "refine_grid",
    "refine_keypoints",
    "select",
    "split",
]


@dataclass
class Decoded:
    """Per-anchor predictions of a batch, before any selection.

    Attributes:
        boxes: ``(B, A, 4)`` xyxy input pixels.
        scores: ``(B, A, C)`` class probabilities.
        mask_coefs: ``(B, A, P)`` prototype coefficients (segmentation).
        protos: ``(B, P, h, w)`` prototype masks (segmentation).
        keypoints: ``(B, A, K, 3)`` x, y in input pixels before refinement, and visibility
            probability (pose).
        heatmaps: ``(B, steps * K, h, w)`` the keypoint refiner's heatmaps (pose with refinement).
    """

    boxes: Tensor
    scores: Tensor
    mask_coefs: Tensor | None = None
    protos: Tensor | None = None
    keypoints: Tensor | None = None
    heatmaps: Tensor | None = None

    def tensors(self) -> dict[str, Tensor]:
        """The tensors that are set, by name, in field order."""
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}


@dataclass(frozen=True)
class RefineConfig:
    """How the keypoint refiner reads its heatmaps (see :class:`~detect.models.heads.keypoint_refine.KeypointRefiner`).

    Attributes:
        stride: the heatmaps' stride in input pixels.
        steps: successive refinements.
        patch: samples per side of the grid read around each keypoint.
        window: the grid's half-size as a fraction of ``sqrt(w * h)`` of the object's box.
        min_radius: the smallest half-size in input pixels; ``None``: one stride.
    """

    stride: float
    steps: int
    patch: int
    window: float
    min_radius: float | None = None


@dataclass(frozen=True)
class PostprocessConfig:
    """Everything selection and assembly need besides the decoded tensors.

    Attributes:
        score_thresh: minimum class score of a candidate.
        nms_iou: IoU above which the lower-scored box of the same class is dropped.
        max_det: detections kept per image.
        pre_nms_topk: (anchor, class) candidates entering NMS per image.
        mask_thresh: probability above which a pixel belongs to a mask.
        refine: the keypoint refiner's reading, when the model refines keypoints.
    """

    score_thresh: float = 0.001
    nms_iou: float = 0.7
    max_det: int = 300
    pre_nms_topk: int = 1000
    mask_thresh: float = 0.5
    refine: RefineConfig | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> PostprocessConfig:
        values = dict(values)
        refine = values.pop("refine", None)
        return cls(**values, refine=RefineConfig(**refine) if refine else None)


@dataclass
class Selection:
    """Detections picked from a batch, flat over images, in decreasing score order.

    Attributes:
        batch_index: ``(N,)`` image of each detection.
        anchor_index: ``(N,)`` the anchor it came from.
        boxes: ``(N, 4)`` xyxy input pixels, clipped to the input.
        scores: ``(N,)``.
        labels: ``(N,)`` class indices.
    """

    batch_index: Tensor
    anchor_index: Tensor
    boxes: Tensor
    scores: Tensor
    labels: Tensor


def select(
    boxes: Tensor, scores: Tensor, input_size: tuple[int, int], config: PostprocessConfig
) -> Selection:
    """Top-k (anchor, class) candidates per image above the score threshold, class-wise NMS, ``max_det``.

    One anchor may give several detections of different classes. Written without a Python loop
    over images and without data-dependent branches, so that it traces into an exported graph
    with a dynamic batch: images and classes are kept apart in one NMS call by moving the boxes
    of each (class, image) pair to a region of their own (x by class, y by image).

    Args:
        boxes: ``(B, A, 4)`` xyxy input pixels (clipped to the input here).
        scores: ``(B, A, C)``.
        input_size: ``(height, width)`` of the network input.
    """
    batch, anchors, num_classes = scores.shape
    height, width = input_size
    flat = scores.float().flatten(1)
    top_scores, top_index = flat.topk(min(config.pre_nms_topk, anchors * num_classes), dim=1)
    image_index = torch.arange(batch, device=scores.device)[:, None].expand_as(top_index)
    passed = top_scores > config.score_thresh
    top_scores, top_index, image_index = top_scores[passed], top_index[passed], image_index[passed]
    anchor_index = top_index // num_classes
    labels = top_index % num_classes
    picked = clip_boxes(boxes.float()[image_index, anchor_index], height, width)
    # Clipped boxes lie in [0, max(height, width)]: one more pixel keeps the regions apart.
    extent = float(max(height, width) + 1)
    offsets = torch.stack([labels, image_index, labels, image_index], dim=1).to(picked) * extent
    keep = nms(picked + offsets, top_scores, config.nms_iou)
    kept_images = image_index[keep]
    # Rank within its image, in score order (keep is sorted by score), for max_det per image.
    same_image = kept_images[:, None] == torch.arange(batch, device=scores.device)[None]
    rank = (same_image.cumsum(0) * same_image).sum(1) - 1
    keep = keep[rank < config.max_det]
    return Selection(image_index[keep], anchor_index[keep], picked[keep], top_scores[keep], labels[keep])


def clip_boxes(boxes: Tensor, height: int, width: int) -> Tensor:
    """``(..., 4)`` xyxy boxes clipped to a ``height`` x ``width`` image (a new tensor)."""
    x = boxes[..., 0::2].clamp(0, width)
    y = boxes[..., 1::2].clamp(0, height)
    return torch.stack([x[..., 0], y[..., 0], x[..., 1], y[..., 1]], dim=-1)


def box_columns_and_rows(boxes: Tensor, height: int, width: int) -> tuple[Tensor, Tensor]:
    """``(N, W)`` and ``(N, H)`` bool: the columns and rows of an ``H x W`` map whose pixel centres
    lie in each of the ``(N, 4)`` xyxy boxes (in the map's pixel units)."""
    xs = torch.arange(width, device=boxes.device, dtype=boxes.dtype) + 0.5
    ys = torch.arange(height, device=boxes.device, dtype=boxes.dtype) + 0.5
    columns = (xs >= boxes[:, 0:1]) & (xs < boxes[:, 2:3])
    rows = (ys >= boxes[:, 1:2]) & (ys < boxes[:, 3:4])
    return columns, rows


def crop_to_boxes(masks: Tensor, boxes: Tensor) -> Tensor:
    """Zero (or, for bool masks, clear) ``(N, H, W)`` masks outside their ``(N, 4)`` xyxy boxes
    (in the masks' pixel units)."""
    columns, rows = box_columns_and_rows(boxes, *masks.shape[-2:])
    inside = rows[:, :, None] & columns[:, None, :]
    return masks & inside if masks.dtype == torch.bool else masks * inside


def logit_threshold(threshold: float) -> float:
    """The logit above which ``sigmoid(logit) > threshold``: masks are thresholded before any
    sigmoid, which would cost a pass over every mask pixel for the same answer."""
    if threshold <= 0:
        return -math.inf
    if threshold >= 1:
        return math.inf
    return math.log(threshold / (1 - threshold))


def assemble_masks(
    coefs: Tensor, protos: Tensor, boxes: Tensor, size: tuple[int, int], threshold: float
) -> Tensor:
    """``(N, H, W)`` bool masks in the input frame from one image's ``(N, P)`` coefficients and
    ``(P, h, w)`` prototypes, cropped to the ``(N, 4)`` boxes."""
    height, width = size
    if coefs.shape[0] == 0:
        return torch.zeros((0, height, width), dtype=torch.bool, device=protos.device)
    logits = (coefs.float() @ protos.float().flatten(1)).view(-1, *protos.shape[-2:])
    logits = F.interpolate(logits[None], size=(height, width), mode="bilinear", align_corners=False)[0]
    return crop_to_boxes(logits > logit_threshold(threshold), boxes)


def refine_grid(patch: int, device: torch.device | None = None) -> Tensor:
    """``(patch * patch, 2)`` bin centres of the refiner's grid in units of the window's half-size, x first."""
    centres = (torch.arange(patch, dtype=torch.float32, device=device) + 0.5) * 2 / patch - 1
    grid_y, grid_x = torch.meshgrid(centres, centres, indexing="ij")
    return torch.stack([grid_x, grid_y], dim=-1).reshape(-1, 2)


@dataclass
class RefineStep:
    """One refinement step: ``keypoints`` ``(N, K, 2)`` after it, the grid ``logits`` ``(N, K, P * P)``
    it read, and the window (``start`` ``(N, K, 2)``, ``radius`` ``(N, 1, 1)``) it read them in."""

    keypoints: Tensor
    logits: Tensor
    start: Tensor
    radius: Tensor


def refine_keypoints(
    heatmaps: Tensor,
    keypoints: Tensor,
    image_index: Tensor,
    boxes: Tensor,
    config: RefineConfig,
) -> list[RefineStep]:
    """Move keypoints to the soft-argmax of their own heatmap, read in a window around them, step by step.

    Args:
        heatmaps: ``(B, steps * K, H, W)`` the refiner tower's output.
        keypoints: ``(N, K, 2)`` starting estimates in input pixels (not differentiated through:
            each step learns its own correction).
        image_index: ``(N,)`` image of each object in the batch.
        boxes: ``(N, 4)`` xyxy boxes that set each object's window.
        config: stride of the heatmaps, steps, grid and window size.

    Returns:
        Every step's keypoints, with the grid logits and windows it read.
    """
    num, num_keypoints = keypoints.shape[:2]
    grid = refine_grid(config.patch, heatmaps.device)
    # fp32, so that the gradients of overlapping samples add up at full precision.
    heatmaps = heatmaps.float()
    wh = (boxes[:, 2:] - boxes[:, :2]).clamp(min=1.0)
    min_radius = config.stride if config.min_radius is None else config.min_radius
    radius = (config.window * wh.prod(dim=1).sqrt()).clamp(min=min_radius)[:, None, None]  # (N, 1, 1)
    batch, height, width = heatmaps.shape[0], *heatmaps.shape[-2:]
    # Keypoint k of an object reads only channel k of its image: each channel is its own
    # one-channel "image" for roi_align, numbered image * K + k.
    keypoint_index = torch.arange(num_keypoints, device=heatmaps.device)
    index = (image_index[:, None] * num_keypoints + keypoint_index).to(heatmaps.dtype)[..., None]
    results = []
    current = keypoints.detach().float()
    for step in range(config.steps):
        channels = heatmaps[:, step * num_keypoints : (step + 1) * num_keypoints]
        channels = channels.reshape(batch * num_keypoints, 1, height, width)
        # One patch x patch grid of bins per keypoint, sampled once at each bin's centre.
        rois = torch.cat([index, current - radius, current + radius], dim=-1).reshape(-1, 5)
        samples = roi_align(
            channels, rois, config.patch, spatial_scale=1.0 / config.stride, sampling_ratio=1, aligned=True
        )
        logits = samples.reshape(num, num_keypoints, config.patch * config.patch)
        offset = logits.softmax(dim=-1) @ grid
        refined = current + offset * radius
        results.append(RefineStep(refined, logits, current, radius))
        current = refined.detach()
    return results


def finish(
    decoded: Decoded,
    selection: Selection,
    input_size: tuple[int, int],
    config: PostprocessConfig,
    per_image: bool = True,
) -> dict[str, Tensor]:
    """Masks and refined keypoints of the selected detections, flat over the batch.

    Args:
        per_image: assemble masks image by image (less memory); ``False`` gathers every
            detection's prototypes at once, without a loop over the batch, as a graph with a
            dynamic batch needs.

    Returns:
        ``masks`` ``(N, H, W)`` bool and/or ``keypoints`` ``(N, K, 3)``, as the model predicts them.
    """
    extras: dict[str, Tensor] = {}
    if decoded.mask_coefs is not None:
        coefs = decoded.mask_coefs[selection.batch_index, selection.anchor_index]
        if per_image:
            masks = torch.zeros((len(selection.scores), *input_size), dtype=torch.bool, device=coefs.device)
            for image in range(decoded.boxes.shape[0]):
                mine = selection.batch_index == image
                masks[mine] = assemble_masks(
                    coefs[mine], decoded.protos[image], selection.boxes[mine], input_size, config.mask_thresh
                )
        else:
            protos = decoded.protos.float()[selection.batch_index]  # (N, P, h, w)
            logits = (coefs.float()[:, None, :] @ protos.flatten(2)).view(-1, *protos.shape[-2:])
            logits = F.interpolate(logits[None], size=input_size, mode="bilinear", align_corners=False)[0]
            masks = crop_to_boxes(logits > logit_threshold(config.mask_thresh), selection.boxes)
        extras["masks"] = masks
    if decoded.keypoints is not None:
        keypoints = decoded.keypoints[selection.batch_index, selection.anchor_index].float()
        positions = keypoints[..., :2]
        if config.refine is not None and decoded.heatmaps is not None:
            # The refiner's window follows the anchor's own (unclipped) box, as in training.
            boxes = decoded.boxes.float()[selection.batch_index, selection.anchor_index]
            steps = refine_keypoints(decoded.heatmaps, positions, selection.batch_index, boxes, config.refine)
            positions = steps[-1].keypoints
        extras["keypoints"] = torch.cat([positions, keypoints[..., 2:]], dim=-1)
    return extras


def split(selection: Selection, extras: dict[str, Tensor], batch: int) -> list[Detections]:
    """One :class:`Detections` per image from a flat selection and its extras."""
    results = []
    for image in range(batch):
        mine = selection.batch_index == image
        results.append(
            Detections(
                selection.boxes[mine],
                selection.scores[mine],
                selection.labels[mine],
                masks=extras["masks"][mine] if "masks" in extras else None,
                keypoints=extras["keypoints"][mine] if "keypoints" in extras else None,
            )
        )
    return results


def finalize(decoded: Decoded, input_size: tuple[int, int], config: PostprocessConfig) -> list[Detections]:
    """Detections in the input frame, one per image: selection, NMS, masks, refined keypoints.

    Args:
        decoded: a batch's per-anchor predictions.
        input_size: ``(height, width)`` of the network input, to clip boxes and size masks.
        config: thresholds and the refiner's reading.
    """
    selection = select(decoded.boxes, decoded.scores, input_size, config)
    extras = finish(decoded, selection, input_size, config)
    return split(selection, extras, decoded.boxes.shape[0])
