"""Fold the input normalization into the first convolution, for inference.

A detector normalizes every image, ``(x / 255 - mean) / std``, before its first convolution: at
batch 1 that is three passes over the image (to float, multiply, subtract) and, under bf16
autocast, a fourth (the cast), about a seventh of a small model's bf16 forward at 640 px. The
normalization is affine per input channel, so the first convolution can take it in its weights
and bias and read the pixels as they come. Only its zero padding differs: a zero in the
normalized image is the mean in pixels, so :class:`PaddedPixels` pads with the mean instead, in
the same single pass that converts the uint8 image to the convolution's dtype.
"""

from __future__ import annotations

import copy
import logging

import torch
from torch import Tensor, nn

__all__ = ["PaddedPixels", "fold_input_normalization"]

log = logging.getLogger(__name__)


class PaddedPixels(nn.Module):
    """Pixels in ``[0, 255]``, padded with the per-channel mean: what a convolution with the
    normalization folded in (and its padding taken out) reads.

    The output is in the autocast dtype where autocast is on, so the first convolution gets its
    input without another cast; it stays NCHW, as a three-channel image converts to and from
    channels-last slowly and oneDNN's first convolution reads it as it is.

    Args:
        padding: ``(rows, columns)`` added on each side.
        fill: the per-channel mean in pixels, ``(1, 3, 1, 1)``.
    """

    def __init__(self, padding: tuple[int, int], fill: Tensor) -> None:
        super().__init__()
        self.padding = (int(padding[0]), int(padding[1]))
        self.register_buffer("fill", fill.detach().clone().view(1, -1, 1, 1), persistent=False)

    def forward(self, images: Tensor) -> Tensor:
        if images.dtype != torch.uint8:
            images = images * 255.0  # [0, 1] floats
        device = images.device.type
        dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else torch.float32
        rows, cols = self.padding
        batch, channels, height, width = images.shape
        out = torch.empty(
            (batch, channels, height + 2 * rows, width + 2 * cols),
            dtype=dtype,
            device=images.device,
        )
        if rows or cols:
            fill = self.fill.to(dtype)
            out[:, :, :rows] = fill
            out[:, :, height + rows :] = fill
            out[:, :, :, :cols] = fill
            out[:, :, :, width + cols :] = fill
        out[:, :, rows : rows + height, cols : cols + width] = images
        return out

    def extra_repr(self) -> str:
        return f"padding={self.padding}"


def _first_conv(detector: nn.Module, probe: Tensor) -> tuple[str, nn.Conv2d] | None:
    """The module that reads the normalized image, if it is a plain ``Conv2d`` and no other module reads it."""
    normalized = detector.normalize(probe)
    readers: list[nn.Module] = []

    def record(module: nn.Module, args: tuple) -> None:
        if args and args[0] is normalized:
            readers.append(module)

    names = {module: name for name, module in detector.backbone.named_modules()}
    handles = [module.register_forward_pre_hook(record) for module in names if not list(module.children())]
    try:
        detector.backbone(normalized)
    finally:
        for handle in handles:
            handle.remove()
    if len(readers) != 1:
        return None
    conv = readers[0]
    if not (
        type(conv) is nn.Conv2d
        and conv.padding_mode == "zeros"
        and not isinstance(conv.padding, str)
        and conv.in_channels == probe.shape[1]
        and conv.groups == 1
    ):
        return None
    return f"backbone.{names[conv]}", conv


def _max_difference(a: dict[str, Tensor], b: dict[str, Tensor]) -> float:
    if a.keys() != b.keys() or any(a[k].shape != b[k].shape for k in a):
        return float("inf")
    return max(((a[k] - b[k]).abs().max() / (1.0 + a[k].abs().max())).item() for k in a)


@torch.no_grad()
def fold_input_normalization(detector: nn.Module) -> bool:
    """Move ``detector``'s input normalization into its first convolution (in place, eval mode).

    The convolution that reads the normalized image is found by running the backbone once on a
    probe; it takes the per-channel scale in its weights and the shift in its bias, loses its
    padding, and :class:`PaddedPixels` becomes ``detector.pixels``, which
    :meth:`~detect.models.Detector.prepare` then runs instead of the normalization. The folded
    backbone is checked against the unfolded one on the probe; where the first operation is not
    a plain convolution (or anything else reads the image), nothing changes.

    Returns:
        whether the normalization was folded.
    """
    if detector.training:
        raise ValueError("fold_input_normalization is for inference: call model.eval() first")
    if getattr(detector, "pixels", None) is not None:
        return True
    size = max(64, 2 * detector.size_divisibility)
    generator = torch.Generator().manual_seed(0)
    probe = torch.randint(0, 256, (1, 3, size, size), dtype=torch.uint8, generator=generator)
    probe = probe.to(detector.pixel_mean.device)
    found = _first_conv(detector, probe)
    if found is None:
        log.debug("input normalization not folded: the image is not read by one plain convolution")
        return False
    name, conv = found
    reference = detector.backbone(detector.normalize(probe))
    scale = (1.0 / (255.0 * detector.pixel_std)).view(1, -1, 1, 1)
    shift = (detector.pixel_mean / detector.pixel_std).view(1, -1, 1, 1)
    folded = copy.deepcopy(conv)
    folded.weight.copy_(conv.weight * scale)
    bias = -(conv.weight * shift).sum(dim=(1, 2, 3))
    if conv.bias is not None:
        bias += conv.bias
    folded.bias = nn.Parameter(bias, requires_grad=False)
    folded.padding = (0, 0)
    detector.set_submodule(name, folded)
    detector.pixels = PaddedPixels(conv.padding, detector.pixel_mean * 255.0)
    try:
        difference = _max_difference(reference, detector.backbone(detector.prepare(probe)))
    except RuntimeError:  # something else reads the image too, and the padded one does not fit it
        difference = float("inf")
    if difference > 1e-4:
        detector.set_submodule(name, conv)
        del detector.pixels
        log.debug("input normalization not folded: the folded backbone differs by %.2g", difference)
        return False
    return True
