"""Typed containers passed between data, model and evaluation.

Boxes are ``xyxy`` absolute pixels (float32) everywhere in the package.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch
from torch import Tensor

__all__ = ["Batch", "Detections", "FeatureSpec", "ImageMeta", "Targets"]


@dataclass(frozen=True)
class FeatureSpec:
    """What one feature map looks like: its channel count and its stride in input pixels."""

    channels: int
    stride: int


@dataclass
class Targets:
    """Ground truth of one image.

    Attributes:
        boxes: ``(N, 4)`` xyxy pixels in the network-input frame.
        labels: ``(N,)`` contiguous class indices in ``[0, num_classes)``.
    """

    boxes: Tensor
    labels: Tensor

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
        return replace(self, boxes=self.boxes.to(device), labels=self.labels.to(device))


@dataclass
class Detections:
    """Predictions for one image.

    Attributes:
        boxes: ``(N, 4)`` xyxy pixels.
        scores: ``(N,)`` confidences in ``[0, 1]``.
        labels: ``(N,)`` contiguous class indices.
    """

    boxes: Tensor
    scores: Tensor
    labels: Tensor

    def __len__(self) -> int:
        return self.boxes.shape[0]

    def to(self, device: torch.device | str) -> Detections:
        return Detections(self.boxes.to(device), self.scores.to(device), self.labels.to(device))

    def rescale(self, meta: ImageMeta) -> Detections:
        """Map boxes from the network-input frame back to the original image, clipped to it."""
        boxes = (self.boxes - self.boxes.new_tensor(meta.offset * 2)) / meta.scale
        height, width = meta.orig_size
        boxes[:, 0::2] = boxes[:, 0::2].clamp(0, width)
        boxes[:, 1::2] = boxes[:, 1::2].clamp(0, height)
        return Detections(boxes, self.scores, self.labels)


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
