"""Cross-stage-partial blocks (C2f) and spatial pyramid pooling (SPPF) of the YOLOv8 family."""

import torch
from torch import Tensor, nn

from detect.models.layers.conv import conv_bn_act

__all__ = ["C2f", "CSPBottleneck", "SPPF"]


class CSPBottleneck(nn.Module):
    """Two 3x3 convs with an optional residual connection."""

    def __init__(self, channels: int, shortcut: bool = True) -> None:
        super().__init__()
        self.conv1 = conv_bn_act(channels, channels, 3)
        self.conv2 = conv_bn_act(channels, channels, 3)
        self.shortcut = shortcut

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv2(self.conv1(x))
        return x + out if self.shortcut else out


class C2f(nn.Module):
    """Split the input in two, run bottlenecks on one half and concatenate every intermediate output.

    Keeping every bottleneck's output gives the gradient short paths to all depths, which is why
    this block trains well from scratch.
    """

    def __init__(
        self, in_channels: int, out_channels: int, num_blocks: int = 1, shortcut: bool = False
    ) -> None:
        super().__init__()
        if num_blocks < 1:
            raise ValueError(f"num_blocks must be >= 1, got {num_blocks}")
        self.hidden_channels = out_channels // 2
        self.conv_in = conv_bn_act(in_channels, 2 * self.hidden_channels, 1)
        self.blocks = nn.ModuleList(CSPBottleneck(self.hidden_channels, shortcut) for _ in range(num_blocks))
        self.conv_out = conv_bn_act((2 + num_blocks) * self.hidden_channels, out_channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        parts = list(self.conv_in(x).chunk(2, dim=1))
        for block in self.blocks:
            parts.append(block(parts[-1]))
        return self.conv_out(torch.cat(parts, dim=1))


class SPPF(nn.Module):
    """Three chained max-pools, equivalent to parallel 5/9/13 pooling at a third of the cost."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 5) -> None:
        super().__init__()
        hidden_channels = in_channels // 2
        self.conv_in = conv_bn_act(in_channels, hidden_channels, 1)
        self.pool = nn.MaxPool2d(kernel_size, stride=1, padding=kernel_size // 2)
        self.conv_out = conv_bn_act(hidden_channels * 4, out_channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv_in(x)
        y1 = self.pool(x)
        y2 = self.pool(y1)
        return self.conv_out(torch.cat([x, y1, y2, self.pool(y2)], dim=1))
