"""ViTDet's simple feature pyramid: one flat feature map turned into strides 8, 16 and 32."""

from torch import Tensor, nn

from detect.models.layers import conv_bn_act

__all__ = ["SimpleFeaturePyramid"]


def _upsample(channels: int) -> list[nn.Module]:
    return [
        nn.ConvTranspose2d(channels, channels // 2, 2, stride=2),
        nn.BatchNorm2d(channels // 2),
        nn.GELU(),
    ]


class SimpleFeaturePyramid(nn.Module):
    """Build ``p3``, ``p4``, ``p5`` from a single stride-8, -16 or -32 feature map.

    Transposed convs double the resolution (halving the channels) for the finer levels,
    max-pooling halves it for the coarser ones; each level then gets a 1x1 projection and a 3x3
    conv, as in ViTDet (Li et al., 2022).

    Args:
        in_channels: channels of the input map.
        out_channels: channels of every output level.
        in_stride: stride of the input map (16 for a ViT with 16 px patches).
    """

    def __init__(self, in_channels: int, out_channels: int, in_stride: int = 16) -> None:
        super().__init__()
        if in_stride not in (8, 16, 32):
            raise ValueError(f"in_stride must be 8, 16 or 32, got {in_stride}")
        self.resample = nn.ModuleDict()
        level_channels = {}
        for level in (3, 4, 5):
            stride, channels, layers = in_stride, in_channels, []
            while stride > 2**level:
                layers += _upsample(channels)
                stride, channels = stride // 2, channels // 2
            while stride < 2**level:
                layers.append(nn.MaxPool2d(2, stride=2))
                stride *= 2
            key = f"p{level}"
            self.resample[key] = nn.Sequential(*layers) if len(layers) > 1 else (layers or [nn.Identity()])[0]
            level_channels[key] = channels
        self.project = nn.ModuleDict(
            {
                key: nn.Sequential(
                    conv_bn_act(channels, out_channels, 1), conv_bn_act(out_channels, out_channels, 3)
                )
                for key, channels in level_channels.items()
            }
        )

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        """Map ``(B, C, H/s, W/s)`` to ``{"p3": (B, C', H/8, W/8), "p4": ..., "p5": ...}``."""
        return {key: self.project[key](resample(x)) for key, resample in self.resample.items()}
