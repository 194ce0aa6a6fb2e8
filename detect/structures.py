"""Typed containers passed between data, model and evaluation.

Boxes are ``xyxy`` absolute pixels (float32) everywhere in the package.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "COCO_PERSON_KEYPOINTS",
    "Batch",
    "Detections",
    "FeatureSpec",
    "ImageMeta",
    "KeypointInfo",
    "Targets",
]

COCO_PERSON_KEYPOINTS = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip",
    "left_knee", "right_knee", "left_ankle", "right_ankle",
)  # fmt: skip
# Per-keypoint OKS sigmas that COCO publishes for its 17 person keypoints (cocoapi's cocoeval.py).
COCO_PERSON_SIGMAS = (
    0.026, 0.025, 0.025, 0.035, 0.035, 0.079, 0.079, 0.072, 0.072, 0.062, 0.062, 0.107, 0.107,
    0.087, 0.087, 0.089, 0.089,
)  # fmt: skip


@dataclass(frozen=True)
class FeatureSpec:
    """What one feature map looks like: its channel count and its stride in input pixels."""

    channels: int
    stride: int


@dataclass(frozen=True)
class KeypointInfo:
    """What a dataset's keypoints are, read from its COCO ``categories[].keypoints`` / ``skeleton``.

    Attributes:
        names: keypoint names in order.
        skeleton: 1-based index pairs, as in COCO.
        sigmas: per-keypoint OKS sigmas (COCO's for its 17 person keypoints, else one value each).
        category_ids: the categories that carry keypoints.
    """

    names: tuple[str, ...]
    skeleton: tuple[tuple[int, int], ...] = ()
    sigmas: tuple[float, ...] = ()
    category_ids: tuple[int, ...] = ()

    @classmethod
    def from_categories(cls, categories: list[dict], default_sigma: float = 0.07) -> KeypointInfo | None:
        """The keypoint description of ``categories``, or None if none carries keypoints.

        Sigmas: a ``keypoint_sigmas`` list in the category if present, COCO's published values
        for the 17 COCO person keypoints, else ``default_sigma`` for every keypoint.
        """
        with_keypoints = [c for c in categories if c.get("keypoints")]
        if not with_keypoints:
            return None
        names = tuple(with_keypoints[0]["keypoints"])
        if any(tuple(c["keypoints"]) != names for c in with_keypoints):
            raise ValueError("categories with keypoints must share one keypoint list")
        if with_keypoints[0].get("keypoint_sigmas"):  # saved by CategoryMap.to_list
            sigmas = tuple(float(v) for v in with_keypoints[0]["keypoint_sigmas"])
            if len(sigmas) != len(names):
                raise ValueError(f"{len(sigmas)} keypoint_sigmas for {len(names)} keypoints")
        elif names == COCO_PERSON_KEYPOINTS:
            sigmas = COCO_PERSON_SIGMAS
        else:
            sigmas = (default_sigma,) * len(names)
        return cls(
            names=names,
            skeleton=tuple(tuple(pair) for pair in with_keypoints[0].get("skeleton", [])),
            sigmas=tuple(sigmas),
            category_ids=tuple(c["id"] for c in with_keypoints),
        )

    def __len__(self) -> int:
        return len(self.names)

    @property
    def flip_index(self) -> list[int]:
        """For each keypoint, the index of its mirror image (``left_*`` <-> ``right_*``; itself otherwise)."""
        index = {name: i for i, name in enumerate(self.names)}
        mirrored = []
        for name in self.names:
            if "left" in name:
                other = name.replace("left", "right")
            elif "right" in name:
                other = name.replace("right", "left")
            else:
                other = name
            mirrored.append(index.get(other, index[name]))
        return mirrored


@dataclass
class Targets:
    """Ground truth of one image.

    Attributes:
        boxes: ``(N, 4)`` xyxy pixels in the network-input frame.
        labels: ``(N,)`` contiguous class indices in ``[0, num_classes)``.
        masks: ``(N, H, W)`` uint8 instance masks in the input frame, when loaded.
        keypoints: ``(N, K, 3)`` x, y, visibility (COCO's 0/1/2), when loaded; all zero for
            instances without keypoints.
        areas: ``(N,)`` object areas in input pixels (COCO's ``area``, the segment's, scaled with
            the image), the scale of COCO's keypoint similarity.
    """

    boxes: Tensor
    labels: Tensor
    masks: Tensor | None = None
    keypoints: Tensor | None = None
    areas: Tensor | None = None

    def __post_init__(self) -> None:
        if self.boxes.ndim != 2 or self.boxes.shape[-1] != 4:
            raise ValueError(f"Targets.boxes must have shape (N, 4), got {tuple(self.boxes.shape)}")
        if self.labels.shape != self.boxes.shape[:1]:
            raise ValueError(
                f"Targets.labels must have shape ({self.boxes.shape[0]},), got {tuple(self.labels.shape)}"
            )

    @classmethod
    def empty(cls, device: torch.device | str = "cpu") -> Targets:
        return cls(torch.zeros((0, 4), device=device), torch.zeros((0,), dtype=torch.long, device=device))

    def __len__(self) -> int:
        return self.boxes.shape[0]

    def to(self, device: torch.device | str) -> Targets:
        return replace(
            self,
            boxes=self.boxes.to(device),
            labels=self.labels.to(device),
            masks=None if self.masks is None else self.masks.to(device),
            keypoints=None if self.keypoints is None else self.keypoints.to(device),
            areas=None if self.areas is None else self.areas.to(device),
        )


@dataclass
class Detections:
    """Predictions for one image.

    Attributes:
        boxes: ``(N, 4)`` xyxy pixels.
        scores: ``(N,)`` confidences in ``[0, 1]``.
        labels: ``(N,)`` contiguous class indices.
        masks: ``(N, H, W)`` bool instance masks over the whole image, for segmentation heads.
        keypoints: ``(N, K, 3)`` x, y, confidence, for pose heads.
    """

    boxes: Tensor
    scores: Tensor
    labels: Tensor
    masks: Tensor | None = None
    keypoints: Tensor | None = None

    def __len__(self) -> int:
        return self.boxes.shape[0]

    def to(self, device: torch.device | str) -> Detections:
        return Detections(
            self.boxes.to(device),
            self.scores.to(device),
            self.labels.to(device),
            None if self.masks is None else self.masks.to(device),
            None if self.keypoints is None else self.keypoints.to(device),
        )

    def select(self, keep: Tensor) -> Detections:
        """The detections picked by a bool mask or an index tensor."""
        return Detections(
            self.boxes[keep],
            self.scores[keep],
            self.labels[keep],
            None if self.masks is None else self.masks[keep],
            None if self.keypoints is None else self.keypoints[keep],
        )

    def rescale(self, meta: ImageMeta) -> Detections:
        """Map everything from the network-input frame back to the original image, clipped to it."""
        height, width = meta.orig_size
        offset = self.boxes.new_tensor(meta.offset)
        boxes = (self.boxes - offset.repeat(2)) / meta.scale
        boxes[:, 0::2] = boxes[:, 0::2].clamp(0, width)
        boxes[:, 1::2] = boxes[:, 1::2].clamp(0, height)
        keypoints = None
        if self.keypoints is not None:
            keypoints = self.keypoints.clone()
            keypoints[..., :2] = (keypoints[..., :2] - offset) / meta.scale
        masks = None
        if self.masks is not None:
            # The image occupies [offset, offset + size * scale) of the input; resample that window.
            x0, y0 = int(round(meta.offset[0])), int(round(meta.offset[1]))
            window = self.masks[:, y0 : y0 + round(height * meta.scale), x0 : x0 + round(width * meta.scale)]
            if window.shape[0] and window.shape[-2:] != (height, width):
                window = F.interpolate(window[None].float(), size=(height, width), mode="bilinear")[0] > 0.5
            masks = window.bool()
        return Detections(boxes, self.scores, self.labels, masks, keypoints)


@dataclass(frozen=True)
class ImageMeta:
    """How one network input relates to its source image.

    ``input_xy = orig_xy * scale + offset``; ``orig_size`` is ``(height, width)``.
    """

    image_id: int | str
    orig_size: tuple[int, int]
    scale: float = 1.0
    offset: tuple[float, float] = (0.0, 0.0)
    file_name: str = ""


@dataclass
class Batch:
    """A collated batch.

    Attributes:
        images: ``(B, 3, H, W)`` uint8 or float in ``[0, 1]``.
        targets: one :class:`Targets` per image.
        metas: one :class:`ImageMeta` per image.
    """

    images: Tensor
    targets: list[Targets]
    metas: list[ImageMeta] = field(default_factory=list)

    def __len__(self) -> int:
        return self.images.shape[0]

    def to(self, device: torch.device | str) -> Batch:
        return Batch(
            self.images.to(device, non_blocking=True), [t.to(device) for t in self.targets], self.metas
        )

    @property
    def image_sizes(self) -> list[tuple[int, int]]:
        height, width = self.images.shape[-2:]
        return [(int(height), int(width))] * len(self)
