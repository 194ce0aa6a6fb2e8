"""Path Aggregation Network (Liu et al., 2018) with C2f fusion blocks, as in YOLOv8."""

import torch
from torch import Tensor, nn

from detect.models.layers import C2f, conv_bn_act
from detect.models.necks.base import Neck, select_specs
from detect.structures import FeatureSpec

__all__ = ["PAN"]


class PAN(Neck):
    """Top-down then bottom-up fusion; each level keeps its backbone width, capped at ``max_channels``.

    Args:
        in_specs: the backbone's ``out_specs``.
        in_features: which backbone levels to use, fine to coarse.
        max_channels: cap on any level's width (wide backbones are projected down with a 1x1 conv).
        num_blocks: bottlenecks in each C2f fusion block.

    >>> pan = PAN({"p3": FeatureSpec(8, 8), "p4": FeatureSpec(16, 16), "p5": FeatureSpec(32, 32)})
    >>> [s.channels for s in pan.out_specs.values()]
    [8, 16, 32]
    """

    def __init__(
        self,
        in_specs: dict[str, FeatureSpec],
        in_features: tuple[str, ...] | list[str] = ("p3", "p4", "p5"),
        max_channels: int = 256,
        num_blocks: int = 1,
    ) -> None:
        super().__init__()
        specs = select_specs(in_specs, in_features)
        if len(specs) < 2:
            raise ValueError(f"PAN needs at least two levels, got in_features={list(in_features)}")
        self.in_features = list(in_features)
        widths = [min(spec.channels, max_channels) for spec in specs]
        self.lateral = nn.ModuleList(
            nn.Identity() if spec.channels == width else conv_bn_act(spec.channels, width, 1)
            for spec, width in zip(specs, widths)
        )
        self.upsample = nn.Upsample(scale_factor=2, mode="nearest")
        # top_down[i] fuses level i with the upsampled level i+1.
        self.top_down = nn.ModuleList(
            C2f(widths[i] + widths[i + 1], widths[i], num_blocks) for i in range(len(widths) - 1)
        )
        self.downsample = nn.ModuleList(
            conv_bn_act(widths[i], widths[i], 3, stride=2) for i in range(len(widths) - 1)
        )
        # bottom_up[i] fuses level i+1 with the downsampled level i.
        self.bottom_up = nn.ModuleList(
            C2f(widths[i] + widths[i + 1], widths[i + 1], num_blocks) for i in range(len(widths) - 1)
        )
        self.out_specs = {
            key: FeatureSpec(width, spec.stride) for key, width, spec in zip(self.in_features, widths, specs)
        }

    def forward(self, features: dict[str, Tensor]) -> dict[str, Tensor]:
        levels = [lateral(features[key]) for lateral, key in zip(self.lateral, self.in_features)]
        for i in range(len(levels) - 2, -1, -1):
            levels[i] = self.top_down[i](torch.cat([levels[i], self.upsample(levels[i + 1])], dim=1))
        for i in range(len(levels) - 1):
            levels[i + 1] = self.bottom_up[i](
                torch.cat([self.downsample[i](levels[i]), levels[i + 1]], dim=1)
            )
        return dict(zip(self.in_features, levels))
