"""Keypoint refinement: move each keypoint to the peak of its own heatmap, read around it."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from detect.models.heads.postprocess import RefineConfig, RefineStep, refine_grid, refine_keypoints
from detect.models.layers import conv_bn_act, separable_pair

__all__ = ["KeypointRefiner", "RefineStep"]


class KeypointRefiner(nn.Module):
    """Residual keypoint updates: a soft-argmax over a heatmap window around the current estimates.

    A pose regressed from one anchor's features has to encode every keypoint of the object in one
    vector; what it gets right is the layout, not the last few pixels. A hand's end, though, is a
    local pattern that a fine (stride-4 or 8) map shows the same way for every object size and position.
    A small conv tower turns that map into one heatmap per keypoint (and step); each keypoint reads a
    ``patch x patch`` grid of its own heatmap (bilinear, ``roi_align``) over a window that grows with
    the object and moves to the softmax-weighted mean of the grid's positions. The expectation
    places a keypoint between grid points and cells, and the same heatmap pattern means the same
    move anywhere: on ``shapes`` one step measured keypoint AP 0.295 against 0.211 for an MLP that
    regressed the offset from a 3x3 patch of features. :meth:`heatmap_loss` also trains the grid
    logits directly towards the true keypoint.

    The heatmaps are only ever read inside the windows, so they need not be right elsewhere.

    Args:
        in_channels: channels of the feature map it reads (the finest head level).
        num_keypoints: keypoints per object.
        channels: width of its feature tower on that map.
        steps: successive refinements, each starting where the last ended, each with its own
            heatmaps.
        patch: samples per side of the grid read around each keypoint.
        window: the grid's half-size, as a fraction of ``sqrt(w * h)`` of the object's box (at least
            one stride of the map it reads).
        upsample: heatmaps this many times finer than the map (a 1x1 convolution to
            ``upsample**2`` sub-positions per cell, then a pixel shuffle): a small figure's hand
            is a pixel or two across, under a stride-4 cell.
        tower: ``"conv"``: two 3x3 conv-BN-SiLU; ``"separable"``: two (depthwise 3x3, pointwise 1x1)
            pairs, the same receptive field at a stride-4 map's size for a fraction of the arithmetic,
            so the tower can be wider.
    """

    def __init__(
        self,
        in_channels: int,
        num_keypoints: int,
        channels: int = 64,
        steps: int = 1,
        patch: int = 7,
        window: float = 0.15,
        upsample: int = 1,
        tower: str = "conv",
    ) -> None:
        super().__init__()
        if tower not in ("conv", "separable"):
            raise ValueError(f"KeypointRefiner's tower must be 'conv' or 'separable', got {tower!r}")
        if channels < 1 or steps < 1 or patch < 2 or window <= 0 or upsample < 1:
            raise ValueError(
                "KeypointRefiner needs channels, steps, upsample >= 1, patch >= 2 and window > 0; "
                f"got {channels}, {steps}, {upsample}, {patch}, {window}"
            )
        self.steps, self.patch, self.window, self.upsample = steps, patch, window, upsample
        heatmaps = nn.Conv2d(channels, steps * num_keypoints * upsample**2, 1)
        # Start as the identity: flat heatmaps put every keypoint at the centre of its window.
        nn.init.zeros_(heatmaps.weight)
        nn.init.zeros_(heatmaps.bias)
        if tower == "separable":
            layers = [*separable_pair(in_channels, channels), *separable_pair(channels, channels)]
        else:
            layers = [conv_bn_act(in_channels, channels, 3), conv_bn_act(channels, channels, 3)]
        self.tower = nn.Sequential(
            *layers,
            heatmaps,
            *([nn.PixelShuffle(upsample)] if upsample > 1 else []),
        )
        self.register_buffer("grid", refine_grid(patch), persistent=False)

    def forward(self, *args: Tensor | float) -> list[Tensor]:
        """Refined ``(N, K, 2)`` keypoints after each step (arguments as :meth:`run`)."""
        return [step.keypoints for step in self.run(*args)]

    def run(
        self,
        heatmaps: Tensor,
        stride: float,
        keypoints: Tensor,
        image_index: Tensor,
        boxes: Tensor,
    ) -> list[RefineStep]:
        """Every step's refined keypoints, with the grid logits and windows it read.

        Args:
            heatmaps: ``(B, steps * K, H, W)`` output of :attr:`tower`.
            stride: the heatmaps' stride in input pixels.
            keypoints: ``(N, K, 2)`` starting estimates in input pixels (not differentiated through:
                each step learns its own correction).
            image_index: ``(N,)`` image of each object in the batch.
            boxes: ``(N, 4)`` xyxy boxes that set each object's window.
        """
        return refine_keypoints(heatmaps, keypoints, image_index, boxes, self.config(stride))

    def config(self, stride: float) -> RefineConfig:
        """How this refiner reads its heatmaps, made from a map of ``stride``: what a model without
        this module needs to refine."""
        # Finer heatmaps keep the map's smallest window: they place a keypoint more precisely,
        # they do not find it from nearer.
        return RefineConfig(
            stride=float(stride) / self.upsample,
            steps=self.steps,
            patch=self.patch,
            window=self.window,
            min_radius=float(stride) if self.upsample > 1 else None,
        )

    def heatmap_loss(self, steps: list[RefineStep], target: Tensor, labelled: Tensor) -> Tensor:
        """Mean over steps and labelled keypoints of KL(soft target || softmax of the grid logits).

        The target is a Gaussian around the true keypoint, one grid spacing wide, on the same grid.
        The soft-argmax alone learns only through the expectation, whose gradient is weak while
        the heatmap is still flat; this loss tells every grid point how much it should hold.

        Args:
            steps: :meth:`run`'s output.
            target: ``(N, K, 2)`` true keypoints in input pixels.
            labelled: ``(N, K)`` which of them count.
        """
        spacing = 2.0 / self.patch
        count = labelled.sum().clamp(min=1)
        losses = []
        for step in steps:
            position = (target[..., :2].float() - step.start) / step.radius  # window units
            distance2 = (self.grid[None, None] - position[..., None, :]).pow(2).sum(dim=-1)
            soft = (-distance2 / (2 * spacing**2)).softmax(dim=-1)
            kl = F.kl_div(step.logits.log_softmax(dim=-1), soft, reduction="none").sum(dim=-1)
            losses.append((kl * labelled).sum() / count)
        return torch.stack(losses).mean()
