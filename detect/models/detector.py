"""Detector: backbone -> neck -> head, composition only (no training framework here)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from detect.models.backbones.base import Backbone
from detect.models.heads.base import Head
from detect.models.layers.norm import set_batchnorm
from detect.models.necks.base import Neck
from detect.structures import Detections, KeypointInfo, Targets

__all__ = ["Detector"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Detector(nn.Module):
    """Wire a backbone, a neck and a head together from the backbone's declared feature specs.

    Args:
        backbone: a built backbone.
        neck: builds the neck from ``in_specs`` (a Hydra partial).
        head: builds the head from ``in_specs`` and ``num_classes`` (a Hydra partial). The head sees
            the neck's levels and, under their own names, the backbone's levels that the neck does
            not replace (a pose refiner may read a fine backbone level the neck leaves out).
        num_classes: number of object classes (comes from the dataset).
        keypoints: the dataset's keypoint description, passed to heads that predict keypoints.
        pixel_mean: per-channel mean of ``[0, 1]`` images, subtracted before the backbone.
        pixel_std: per-channel std of ``[0, 1]`` images.
        batchnorm: ``eps`` and ``momentum`` for every BatchNorm of the model, after it is built
            (:func:`detect.models.layers.norm.set_batchnorm`); ``None`` or missing keys keep each
            layer's own.

    >>> from functools import partial
    >>> from detect.models import CSPDarknet, PAN, DetectHead
    >>> model = Detector(CSPDarknet(), PAN, DetectHead, num_classes=3)
    >>> model.loss(model(torch.rand(1, 3, 64, 64)), [Targets.empty()])["loss_cls"].ndim
    0
    """

    def __init__(
        self,
        backbone: Backbone,
        neck: Callable[..., Neck],
        head: Callable[..., Head],
        num_classes: int,
        keypoints: KeypointInfo | None = None,
        pixel_mean: tuple[float, float, float] = IMAGENET_MEAN,
        pixel_std: tuple[float, float, float] = IMAGENET_STD,
        batchnorm: dict[str, float | None] | None = None,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.neck = neck(in_specs=backbone.out_specs)
        head_class = getattr(head, "func", head)
        extra = {"keypoints": keypoints} if "keypoints" in getattr(head_class, "target_fields", ()) else {}
        head_specs = {**backbone.out_specs, **self.neck.out_specs}
        self.head = head(in_specs=head_specs, num_classes=num_classes, **extra)
        self.num_classes = num_classes
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std).view(1, 3, 1, 1), persistent=False)
        set_batchnorm(self, **(batchnorm or {}))

    @property
    def size_divisibility(self) -> int:
        return self.backbone.size_divisibility

    def check_input_size(self, height: int, width: int) -> None:
        """Raise ``ValueError`` unless both sides are multiples of the backbone's divisibility."""
        multiple = self.size_divisibility
        if height % multiple or width % multiple:
            raise ValueError(
                f"input size {height}x{width} is not a multiple of {multiple}, which this backbone needs; "
                f"use an image_size divisible by {multiple}"
            )

    def forward(self, images: Tensor) -> Any:
        """Raw head outputs for ``(B, 3, H, W)`` images in ``[0, 1]`` (or uint8 ``[0, 255]``)."""
        self.check_input_size(*images.shape[-2:])
        features = self.backbone(self.prepare(images))
        return self.head({**features, **self.neck(features)})

    def prepare(self, images: Tensor) -> Tensor:
        """What the backbone reads: the normalized images, or the raw pixels once
        :func:`~detect.models.fold_input.fold_input_normalization` has moved the normalization into
        the first convolution (an inference model's ``pixels``)."""
        pixels = getattr(self, "pixels", None)
        return self.normalize(images) if pixels is None else pixels(images)

    def normalize(self, images: Tensor) -> Tensor:
        """``(images - mean) / std`` of ``[0, 1]`` float or uint8 ``[0, 255]`` images, as NCHW floats."""
        scale = 1.0 / self.pixel_std
        shift = self.pixel_mean * scale
        if images.dtype == torch.uint8:
            images, scale = images.float(), scale / 255.0
        # NCHW: per-channel broadcasting over a channels-last tensor runs several times slower
        # (3 ms against 0.1 for one 320 px image); the first convolution changes the layout anyway.
        return images.contiguous().mul(scale).sub_(shift)

    def loss(self, outputs: Any, targets: list[Targets]) -> dict[str, Tensor]:
        """Named loss terms; their sum is what training minimises."""
        return self.head.loss(outputs, targets)

    def postprocess(self, outputs: Any, image_sizes: list[tuple[int, int]]) -> list[Detections]:
        """Detections in the input frame, one per image."""
        return self.head.postprocess(outputs, image_sizes)
