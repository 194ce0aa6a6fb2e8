"""oneDNN's fused convolutions for CPU inference: convolution, bias and activation in one primitive.

Eager PyTorch runs a convolution and the activation after it as two passes over memory, hands each
convolution's weights to oneDNN again on every call, and takes its slower native path for small
inputs at batch 1. :func:`use_onednn` replaces every ``Conv2d`` (with the activation that follows
it in a ``Sequential``, once BatchNorm is folded) by :class:`OneDNNConv2d`, which calls oneDNN's
fused convolution (``torch.ops.mkldnn._convolution_pointwise``, the kernel ``torch.compile`` emits
for the same pattern) with weights reordered once into oneDNN's blocked layout. It is still eager
PyTorch: no graph capture, any input size.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torchvision.ops import Conv2dNormActivation

__all__ = ["OneDNNConv2d", "onednn_available", "use_onednn"]

# Activations oneDNN applies inside the convolution, by the name its fused kernel knows them.
_ACTIVATIONS: dict[type[nn.Module], str] = {
    nn.ReLU: "relu",
    nn.SiLU: "swish",
    nn.Hardswish: "hardswish",
    nn.Hardsigmoid: "hardsigmoid",
    nn.Sigmoid: "sigmoid",
    nn.Tanh: "tanh",
}


def onednn_available(dtype: torch.dtype = torch.float32) -> bool:
    """Whether this PyTorch build and CPU can run :class:`OneDNNConv2d` in ``dtype``."""
    if not torch.backends.mkldnn.is_available() or not hasattr(torch.ops.mkldnn, "_convolution_pointwise"):
        return False
    if dtype == torch.bfloat16:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    return dtype == torch.float32


def _activation_name(module: nn.Module) -> str | None:
    name = _ACTIVATIONS.get(type(module))
    if name is None and isinstance(module, nn.GELU):
        return "gelu"
    return name


class OneDNNConv2d(nn.Module):
    """A ``Conv2d`` and an optional activation run as one oneDNN primitive (CPU, inference only).

    The weights are reordered for oneDNN once per input shape and dtype and kept; autocast to
    bf16, where active, is honoured (the kernel runs in bf16 and returns bf16).

    Args:
        conv: the convolution (BatchNorm already folded into it), zero padding.
        activation: applied to the convolution's output, or ``None``.
    """

    def __init__(self, conv: nn.Conv2d, activation: nn.Module | None = None) -> None:
        super().__init__()
        if not self.supports(conv):
            raise ValueError(f"OneDNNConv2d takes a zero-padded Conv2d with numeric padding, got {conv}")
        attr = "none" if activation is None else _activation_name(activation)
        if attr is None:
            raise ValueError(f"oneDNN cannot fuse the activation {type(activation).__name__}")
        self.attr = attr
        self.algorithm = getattr(activation, "approximate", "") if attr == "gelu" else ""
        self.padding = list(conv.padding)
        self.stride = list(conv.stride)
        self.dilation = list(conv.dilation)
        self.groups = conv.groups
        self.out_channels = conv.out_channels
        self.weight = nn.Parameter(conv.weight.detach().clone(), requires_grad=False)
        self.bias = (
            None if conv.bias is None else nn.Parameter(conv.bias.detach().clone(), requires_grad=False)
        )
        self._packed: dict[tuple, tuple[Tensor, Tensor | None]] = {}

    @staticmethod
    def supports(conv: nn.Module) -> bool:
        return (
            type(conv) is nn.Conv2d
            and conv.padding_mode == "zeros"
            and not isinstance(conv.padding, str)
            and conv.weight.device.type == "cpu"
        )

    def _weights(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        key = (tuple(x.shape), x.dtype)
        packed = self._packed.get(key)
        if packed is None:
            weight = self.weight.detach().to(x.dtype).contiguous(memory_format=torch.channels_last)
            weight = torch.ops.mkldnn._reorder_convolution_weight(
                weight, self.padding, self.stride, self.dilation, self.groups, list(x.shape)
            )
            bias = None if self.bias is None else self.bias.detach().to(x.dtype)
            # A handful of shapes at most (a video, a few sizes): the cache stays small.
            self._packed[key] = packed = (weight, bias)
        return packed

    def forward(self, x: Tensor) -> Tensor:
        if torch.is_autocast_enabled("cpu"):
            x = x.to(torch.get_autocast_dtype("cpu"))
        x = x.contiguous(memory_format=torch.channels_last)
        weight, bias = self._weights(x)
        scalars: list = []
        return torch.ops.mkldnn._convolution_pointwise(
            x, weight, bias, self.padding, self.stride, self.dilation, self.groups,
            self.attr, scalars, self.algorithm or None,
        )  # fmt: skip

    def __getstate__(self) -> dict:
        # The packed weights are oneDNN-layout tensors that neither copy nor pickle; they are
        # packed again on the next call.
        state = super().__getstate__()
        state["_packed"] = {}
        return state

    def extra_repr(self) -> str:
        return (
            f"{self.weight.shape[1] * self.groups}, {self.out_channels}, kernel_size={tuple(self.weight.shape[2:])}, "
            f"stride={tuple(self.stride)}, groups={self.groups}, activation={self.attr}"
        )


def use_onednn(model: nn.Module) -> int:
    """Replace every supported ``Conv2d`` in ``model`` by :class:`OneDNNConv2d`, in place.

    An activation directly after a convolution in a ``Sequential`` (``Identity`` between them
    allowed: what a folded BatchNorm leaves) is fused into it and replaced by ``Identity``.
    Fold BatchNorm first (:func:`~detect.models.fuse.fuse_conv_bn`): a norm between the two keeps
    them apart. The model must be in eval mode; the result is for inference only.

    Returns:
        the number of convolutions replaced.
    """
    if model.training:
        raise ValueError("use_onednn is for inference: call model.eval() first")
    return _replace(model)


def _replace(module: nn.Module) -> int:
    count = 0
    if isinstance(module, nn.Sequential):
        names = list(module._modules)
        for index, name in enumerate(names):
            conv = module._modules[name]
            if conv is None or not OneDNNConv2d.supports(conv):
                continue
            follow = index + 1
            while follow < len(names) and type(module._modules[names[follow]]) is nn.Identity:
                follow += 1
            activation = module._modules[names[follow]] if follow < len(names) else None
            if activation is not None and _activation_name(activation) is not None:
                module._modules[names[follow]] = nn.Identity()
            else:
                activation = None
            module._modules[name] = OneDNNConv2d(conv, activation)
            count += 1
    for name, child in module.named_children():
        if OneDNNConv2d.supports(child):
            setattr(module, name, OneDNNConv2d(child))
            count += 1
        elif not isinstance(child, OneDNNConv2d):
            count += _replace(child)
            alone = _sole_conv(child)
            if alone is not None:
                # Conv2dNormActivation(conv, Identity, Identity) after fusion: three module calls
                # where one does, at a few microseconds each on every conv of every forward.
                setattr(module, name, alone)
    return count


def _sole_conv(module: nn.Module) -> OneDNNConv2d | None:
    """The one fused conv of a ``Sequential`` that holds nothing else but ``Identity``."""
    if type(module) not in (nn.Sequential, Conv2dNormActivation):
        return None
    convs = [m for m in module.children() if isinstance(m, OneDNNConv2d)]
    rest = [m for m in module.children() if not isinstance(m, OneDNNConv2d | nn.Identity)]
    return convs[0] if len(convs) == 1 and not rest else None
