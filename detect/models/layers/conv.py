"""Convolution + BatchNorm + activation, the unit every CNN part here is made of."""

from torch import nn
from torchvision.ops import Conv2dNormActivation

__all__ = ["conv_bn_act", "separable_pair"]


def conv_bn_act(
    in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1, groups: int = 1
) -> Conv2dNormActivation:
    """A ``kernel_size`` conv with 'same' padding, BatchNorm and SiLU."""
    return Conv2dNormActivation(
        in_channels,
        out_channels,
        kernel_size=kernel_size,
        stride=stride,
        groups=groups,
        norm_layer=nn.BatchNorm2d,
        activation_layer=nn.SiLU,
    )


def separable_pair(in_channels: int, out_channels: int) -> list[Conv2dNormActivation]:
    """A depthwise 3x3 and a pointwise 1x1 :func:`conv_bn_act`: a 3x3's receptive field for a
    fraction of its arithmetic."""
    return [
        conv_bn_act(in_channels, in_channels, 3, groups=in_channels),
        conv_bn_act(in_channels, out_channels, 1),
    ]
