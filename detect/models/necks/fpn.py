"""Feature Pyramid Network (Lin et al., 2017) over torchvision's implementation."""

from collections import OrderedDict

from torch import Tensor, nn
from torchvision.ops import FeaturePyramidNetwork

from detect.models.necks.base import Neck, select_specs
from detect.structures import FeatureSpec

__all__ = ["FPN"]


class FPN(Neck):
    """Top-down pathway with lateral connections; every level gets ``out_channels``.

    Args:
        in_specs: the backbone's ``out_specs``.
        in_features: which backbone levels to use, fine to coarse.
        out_channels: channels of every output level.
        norm: add BatchNorm after the lateral and output convs (helps training from scratch).

    >>> fpn = FPN({"p3": FeatureSpec(8, 8), "p4": FeatureSpec(16, 16)}, ["p3", "p4"], 32)
    >>> {k: (s.channels, s.stride) for k, s in fpn.out_specs.items()}
    {'p3': (32, 8), 'p4': (32, 16)}
    """

    def __init__(
        self,
        in_specs: dict[str, FeatureSpec],
        in_features: tuple[str, ...] | list[str] = ("p3", "p4", "p5"),
        out_channels: int = 128,
        norm: bool = True,
    ) -> None:
        super().__init__()
        specs = select_specs(in_specs, in_features)
        if out_channels < 1:
            raise ValueError(f"out_channels must be positive, got {out_channels}")
        self.in_features = list(in_features)
        self.fpn = FeaturePyramidNetwork(
            [spec.channels for spec in specs], out_channels, norm_layer=nn.BatchNorm2d if norm else None
        )
        self.out_specs = {
            key: FeatureSpec(out_channels, spec.stride) for key, spec in zip(self.in_features, specs)
        }

    def forward(self, features: dict[str, Tensor]) -> dict[str, Tensor]:
        return dict(self.fpn(OrderedDict((key, features[key]) for key in self.in_features)))
