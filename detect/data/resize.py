"""Progressive resizing: early training epochs on downscaled batches, which cost fewer pixels a step."""

from __future__ import annotations

from dataclasses import replace

import torch
import torch.nn.functional as F

from detect.data.transforms import scaled_image_size
from detect.structures import Batch, Targets

__all__ = ["early_image_size", "resize_batch"]


def early_image_size(image_size: int, scale: float) -> int:
    """The side of the early epochs' batches: ``image_size * scale``, a multiple of 32."""
    return scaled_image_size(image_size, scale)


def _resize_targets(targets: Targets, factor: float) -> Targets:
    # Masks keep their resolution: they cover the same frame, and the mask loss area-averages them
    # onto its own grid, which is more exact from the finer original than from a resampled copy.
    keypoints = targets.keypoints
    if keypoints is not None:
        keypoints = torch.cat([keypoints[..., :2] * factor, keypoints[..., 2:]], dim=-1)
    return replace(
        targets,
        boxes=targets.boxes * factor,
        keypoints=keypoints,
        areas=None if targets.areas is None else targets.areas * factor**2,
    )


def resize_batch(batch: Batch, size: int) -> Batch:
    """The batch's square images downscaled to ``size`` (antialiased), boxes, keypoints and areas with them.

    Image metas are left as they are: a resized batch is for the training loss, never for scoring.
    """
    height, width = batch.images.shape[-2:]
    if height != width:
        raise ValueError(f"progressive resizing needs square training images, got {height}x{width}")
    if size == height:
        return batch
    images = batch.images
    uint8 = images.dtype == torch.uint8
    resized = F.interpolate(
        images.float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False
    )
    if uint8:
        resized = resized.round_().clamp_(0, 255).to(torch.uint8)
    factor = size / height
    return Batch(resized, [_resize_targets(t, factor) for t in batch.targets], batch.metas)
