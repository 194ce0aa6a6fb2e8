"""CSPDarknet with C2f stages and SPPF, the YOLOv8 backbone, scaled by depth and width multipliers."""

import math

from torch import Tensor, nn

from detect.models.backbones.base import Backbone
from detect.models.layers import SPPF, C2f, conv_bn_act
from detect.structures import FeatureSpec

__all__ = ["CSPDarknet"]

# (output channels at width 1.0, C2f blocks at depth 1.0) of the four strided stages after the stem.
_STAGES = ((128, 3), (256, 6), (512, 6), (1024, 3))
_STEM_CHANNELS = 64


class CSPDarknet(Backbone):
    """YOLOv8-style CSPDarknet.

    Args:
        depth_multiple: scales the number of C2f blocks per stage (n: 0.33, s: 0.33, m: 0.67, l: 1.0).
        width_multiple: scales channel widths (n: 0.25, s: 0.5, m: 0.75, l: 1.0).
        max_channels: cap on any stage's width before scaling (n/s: 1024, m: 768, l: 512).
        out_features: which of ``p3``, ``p4``, ``p5`` to return.
        freeze_at: freeze the stem and this many stages (0: stem only; null: train everything).

    >>> backbone = CSPDarknet(0.33, 0.25)
    >>> {k: (s.channels, s.stride) for k, s in backbone.out_specs.items()}
    {'p3': (64, 8), 'p4': (128, 16), 'p5': (256, 32)}
    """

    def __init__(
        self,
        depth_multiple: float = 0.33,
        width_multiple: float = 0.25,
        max_channels: int = 1024,
        out_features: tuple[str, ...] = ("p3", "p4", "p5"),
        freeze_at: int | None = None,
    ) -> None:
        super().__init__()
        if not 0 < depth_multiple <= 2 or not 0 < width_multiple <= 2:
            raise ValueError(
                f"depth_multiple and width_multiple must be in (0, 2], got {depth_multiple}, {width_multiple}"
            )
        unknown = set(out_features) - {"p2", "p3", "p4", "p5"}
        if unknown:
            raise ValueError(f"out_features may hold p2..p5, got {sorted(unknown)}")

        def width(channels: int) -> int:
            return max(8, int(math.ceil(min(channels, max_channels) * width_multiple / 8) * 8))

        in_channels = width(_STEM_CHANNELS)
        self.stem = conv_bn_act(3, in_channels, 3, stride=2)
        self.stages = nn.ModuleList()
        specs = {}
        for index, (channels, blocks) in enumerate(_STAGES):
            out_channels = width(channels)
            layers = [
                conv_bn_act(in_channels, out_channels, 3, stride=2),
                C2f(out_channels, out_channels, max(round(blocks * depth_multiple), 1), shortcut=True),
            ]
            if index == len(_STAGES) - 1:
                layers.append(SPPF(out_channels, out_channels))
            self.stages.append(nn.Sequential(*layers))
            level = index + 2
            specs[f"p{level}"] = FeatureSpec(out_channels, 2**level)
            in_channels = out_channels
        self.out_features = tuple(out_features)
        self._set_out_specs({key: specs[key] for key in self.out_features})
        self.freeze(freeze_at)

    def stage_prefixes(self) -> list[list[str]]:
        return [["stem"]] + [[f"stages.{index}"] for index in range(len(self.stages))]

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        x = self.stem(images)
        features = {}
        for level, stage in enumerate(self.stages, start=2):
            x = stage(x)
            if f"p{level}" in self.out_specs:
                features[f"p{level}"] = x
        return features
