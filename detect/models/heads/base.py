"""The head contract: ``forward`` -> raw outputs, ``loss`` -> named losses, ``postprocess`` -> detections."""

from typing import Any

import torch
from torch import Tensor, nn

from detect.structures import Detections, FeatureSpec, Targets

__all__ = ["Head", "make_anchors"]


class Head(nn.Module):
    """Base class for task heads, built from the feature specs and ``num_classes``.

    The specs are the neck's ``out_specs`` plus, under their own names, the backbone levels the
    neck does not output (a head picks what it reads by name).

    Attributes:
        target_fields: what the head needs in :class:`Targets` besides boxes and labels
            (``"masks"``, ``"keypoints"``), so the task can ask the data for it.
    """

    target_fields: tuple[str, ...] = ()

    def forward(self, features: dict[str, Tensor]) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def loss(self, outputs: Any, targets: list[Targets]) -> dict[str, Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError

    def postprocess(
        self, outputs: Any, image_sizes: list[tuple[int, int]]
    ) -> list[Detections]:  # pragma: no cover - abstract
        raise NotImplementedError


def make_anchors(
    feature_sizes: list[tuple[int, int]], specs: list[FeatureSpec], device: torch.device, dtype: torch.dtype
) -> tuple[Tensor, Tensor]:
    """Anchor points at the centre of every feature-map cell.

    Returns:
        ``(A, 2)`` xy centres in input pixels and ``(A, 1)`` the stride of each.
    """
    points, strides = [], []
    for (height, width), spec in zip(feature_sizes, specs):
        ys = (torch.arange(height, device=device, dtype=dtype) + 0.5) * spec.stride
        xs = (torch.arange(width, device=device, dtype=dtype) + 0.5) * spec.stride
        grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
        points.append(torch.stack([grid_x, grid_y], dim=-1).reshape(-1, 2))
        strides.append(torch.full((height * width, 1), float(spec.stride), device=device, dtype=dtype))
    return torch.cat(points), torch.cat(strides)
