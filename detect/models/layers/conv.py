"""Convolution + BatchNorm + activation, the unit every CNN part here is made of."""

from torch import nn
from torchvision.ops import Conv2dNormActivation

__all__ = ["conv_bn_act"]


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
