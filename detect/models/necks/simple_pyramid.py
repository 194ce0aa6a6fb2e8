"""ViTDet's simple feature pyramid: one stride-16 map turned into strides 8, 16 and 32."""

from torch import Tensor, nn

from detect.models.layers import conv_bn_act

__all__ = ["SimpleFeaturePyramid"]


class SimpleFeaturePyramid(nn.Module):
    """Build ``p3``, ``p4``, ``p5`` from a single stride-16 feature map.

    A transposed conv doubles the resolution for ``p3``, max-pooling halves it for ``p5``; each level
    then gets a 1x1 projection and a 3x3 conv, as in ViTDet (Li et al., 2022).

    Args:
        in_channels: channels of the stride-16 input.
        out_channels: channels of every output level.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.resample = nn.ModuleDict(
            {
                "p3": nn.Sequential(
                    nn.ConvTranspose2d(in_channels, in_channels // 2, 2, stride=2),
                    nn.BatchNorm2d(in_channels // 2),
                    nn.GELU(),
                ),
                "p4": nn.Identity(),
                "p5": nn.MaxPool2d(2, stride=2),
            }
        )
        level_channels = {"p3": in_channels // 2, "p4": in_channels, "p5": in_channels}
        self.project = nn.ModuleDict(
            {
                key: nn.Sequential(
                    conv_bn_act(channels, out_channels, 1), conv_bn_act(out_channels, out_channels, 3)
                )
                for key, channels in level_channels.items()
            }
        )

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        """Map ``(B, C, H/16, W/16)`` to ``{"p3": (B, C', H/8, W/8), "p4": ..., "p5": ...}``."""
        return {key: self.project[key](resample(x)) for key, resample in self.resample.items()}
