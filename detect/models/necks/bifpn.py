"""Bi-directional FPN with fast normalised fusion (EfficientDet, Tan et al., 2020)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from detect.models.layers import conv_bn_act
from detect.models.necks.base import Neck, select_specs
from detect.structures import FeatureSpec

__all__ = ["BiFPN"]


class WeightedFusion(nn.Module):
    """``sum(relu(w_i) * x_i) / (sum(relu(w_i)) + eps)``, then SiLU and a depthwise-separable conv.

    The learned non-negative weights let each node decide how much each input counts, at the cost
    of one scalar per input (EfficientDet's "fast normalised fusion", no softmax).
    """

    def __init__(self, num_inputs: int, channels: int, eps: float = 1e-4) -> None:
        super().__init__()
        self.weights = nn.Parameter(torch.ones(num_inputs))
        self.eps = eps
        self.conv = nn.Sequential(
            nn.SiLU(),
            nn.Conv2d(channels, channels, 3, padding=1, groups=channels, bias=False),
            conv_bn_act(channels, channels, 1),
        )

    def forward(self, inputs: list[Tensor]) -> Tensor:
        weights = F.relu(self.weights)
        weights = weights / (weights.sum() + self.eps)
        fused = sum(weight * x for weight, x in zip(weights, inputs))
        return self.conv(fused)


class BiFPNLayer(nn.Module):
    """One top-down pass, then one bottom-up pass whose middle nodes also see the layer's input."""

    def __init__(self, num_levels: int, channels: int) -> None:
        super().__init__()
        self.top_down = nn.ModuleList(WeightedFusion(2, channels) for _ in range(num_levels - 1))
        self.bottom_up = nn.ModuleList(
            WeightedFusion(3 if i < num_levels - 1 else 2, channels) for i in range(1, num_levels)
        )

    def forward(self, levels: list[Tensor]) -> list[Tensor]:
        count = len(levels)
        # top_down[i] makes the intermediate node of level i from level i and the node above it.
        inner = list(levels)
        for i in range(count - 2, -1, -1):
            above = F.interpolate(inner[i + 1], size=levels[i].shape[-2:], mode="nearest")
            inner[i] = self.top_down[i]([levels[i], above])
        outputs = [inner[0]]
        for i in range(1, count):
            below = F.max_pool2d(outputs[-1], kernel_size=3, stride=2, padding=1)
            inputs = [levels[i], inner[i], below] if i < count - 1 else [levels[i], below]
            outputs.append(self.bottom_up[i - 1](inputs))
        return outputs


class BiFPN(Neck):
    """Stacked BiFPN layers over the backbone levels, all at one width.

    Args:
        in_specs: the backbone's ``out_specs``.
        in_features: which backbone levels to use, fine to coarse.
        channels: width of every level (EfficientDet-D0: 64).
        num_layers: repeated BiFPN layers (D0: 3; 2 is lighter on CPU).

    >>> neck = BiFPN({"p3": FeatureSpec(8, 8), "p4": FeatureSpec(16, 16), "p5": FeatureSpec(32, 32)}, channels=24)
    >>> [(s.channels, s.stride) for s in neck.out_specs.values()]
    [(24, 8), (24, 16), (24, 32)]
    """

    def __init__(
        self,
        in_specs: dict[str, FeatureSpec],
        in_features: tuple[str, ...] | list[str] = ("p3", "p4", "p5"),
        channels: int = 64,
        num_layers: int = 2,
    ) -> None:
        super().__init__()
        specs = select_specs(in_specs, in_features)
        if len(specs) < 2:
            raise ValueError(f"BiFPN needs at least two levels, got in_features={list(in_features)}")
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        self.in_features = list(in_features)
        self.lateral = nn.ModuleList(conv_bn_act(spec.channels, channels, 1) for spec in specs)
        self.layers = nn.ModuleList(BiFPNLayer(len(specs), channels) for _ in range(num_layers))
        self.out_specs = {
            key: FeatureSpec(channels, spec.stride) for key, spec in zip(self.in_features, specs)
        }

    def forward(self, features: dict[str, Tensor]) -> dict[str, Tensor]:
        levels = [lateral(features[key]) for lateral, key in zip(self.lateral, self.in_features)]
        for layer in self.layers:
            levels = layer(levels)
        return dict(zip(self.in_features, levels))
