"""Classifier: a backbone with a pooled linear head, to pre-train backbones for detectors.

Its parameters are named ``backbone.*`` as in :class:`~detect.models.Detector`, so a detector
starts from a classifier's checkpoint with ``init_from=`` (or ``backbone.weights=``): the backbone
loads, the classification head is left out.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from detect.models.backbones.base import Backbone
from detect.models.detector import IMAGENET_MEAN, IMAGENET_STD, Detector
from detect.models.layers.norm import set_batchnorm
from detect.structures import FeatureSpec

__all__ = ["ClassifyHead", "Classifier"]


class ClassifyHead(nn.Module):
    """Global average pooling of the backbone's coarsest level, dropout, one linear layer.

    Args:
        in_specs: the backbone's levels; the one of the largest stride is pooled.
        num_classes: number of classes.
        dropout: before the linear layer.
        label_smoothing: of the cross-entropy loss.
    """

    target_fields: tuple[str, ...] = ("labels",)

    def __init__(
        self,
        in_specs: dict[str, FeatureSpec],
        num_classes: int,
        dropout: float = 0.0,
        label_smoothing: float = 0.1,
    ) -> None:
        super().__init__()
        self.level, spec = max(in_specs.items(), key=lambda item: item[1].stride)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(spec.channels, num_classes)
        self.label_smoothing = label_smoothing

    def forward(self, features: dict[str, Tensor]) -> Tensor:
        pooled = features[self.level].float().mean(dim=(2, 3))
        return self.fc(self.dropout(pooled))

    def loss(self, logits: Tensor, labels: Tensor) -> dict[str, Tensor]:
        return {"loss_cls": F.cross_entropy(logits.float(), labels, label_smoothing=self.label_smoothing)}


class Classifier(nn.Module):
    """Backbone -> :class:`ClassifyHead`; the same input convention as the Detector.

    Args:
        backbone: a built backbone.
        head: builds the head from ``in_specs`` and ``num_classes`` (a Hydra partial).
        num_classes: number of classes (comes from the dataset).
        neck: ignored (a classifier has none); accepted so that the training config composes.
        keypoints: ignored, as ``neck``.
        pixel_mean, pixel_std, batchnorm: as the Detector's.

    >>> from detect.models import CSPDarknet
    >>> model = Classifier(CSPDarknet(), ClassifyHead, num_classes=4)
    >>> model(torch.rand(2, 3, 64, 64)).shape
    torch.Size([2, 4])
    """

    def __init__(
        self,
        backbone: Backbone,
        head: Callable[..., ClassifyHead],
        num_classes: int,
        neck: Any = None,
        keypoints: Any = None,
        pixel_mean: tuple[float, float, float] = IMAGENET_MEAN,
        pixel_std: tuple[float, float, float] = IMAGENET_STD,
        batchnorm: dict[str, float | None] | None = None,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head(in_specs=backbone.out_specs, num_classes=num_classes)
        self.num_classes = num_classes
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std).view(1, 3, 1, 1), persistent=False)
        set_batchnorm(self, **(batchnorm or {}))

    size_divisibility = Detector.size_divisibility
    check_input_size = Detector.check_input_size
    normalize = Detector.normalize

    def forward(self, images: Tensor) -> Tensor:
        """Logits ``(B, num_classes)`` for ``(B, 3, H, W)`` images in ``[0, 1]`` (or uint8)."""
        self.check_input_size(*images.shape[-2:])
        return self.head(self.backbone(self.normalize(images)))

    def loss(self, logits: Tensor, labels: Tensor) -> dict[str, Tensor]:
        return self.head.loss(logits, labels)
