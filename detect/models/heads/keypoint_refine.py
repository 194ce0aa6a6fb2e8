"""Keypoint refinement: move each keypoint by what a fine feature map shows around it."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torchvision.ops import roi_align

from detect.models.layers import conv_bn_act

__all__ = ["KeypointRefiner"]


class KeypointRefiner(nn.Module):
    """Residual keypoint updates read from a fine feature map around the current estimates.

    A pose regressed from one anchor's features has to encode every keypoint of the object in one
    vector; what it gets right is the layout, not the last few pixels. A hand's end, though, is a
    local pattern: sampled around the estimate, a fine (stride-8) map shows where the limb ends, the
    same way for every object size and position. Each step samples a ``patch x patch`` grid of
    features centred on every keypoint (bilinear, ``roi_align``), spanning a window that grows with the object,
    and a small MLP shared by all keypoints (plus a learned embedding per keypoint, so a left hand
    and a right hand can move differently) predicts the offset in units of that window.

    Args:
        in_channels: channels of the feature map it reads (the finest head level).
        num_keypoints: keypoints per object.
        channels: width of its feature tower on that map.
        steps: successive refinements, each starting where the last ended.
        patch: samples per side of the grid read around each keypoint.
        window: the grid's half-size, as a fraction of ``sqrt(w * h)`` of the object's box (at least
            one stride).
        hidden: width of the MLP.
    """

    def __init__(
        self,
        in_channels: int,
        num_keypoints: int,
        channels: int = 64,
        steps: int = 1,
        patch: int = 3,
        window: float = 0.15,
        hidden: int = 128,
    ) -> None:
        super().__init__()
        if channels < 1 or steps < 1 or patch < 1 or window <= 0:
            raise ValueError(
                "KeypointRefiner needs channels, steps and patch >= 1 and window > 0; "
                f"got {channels}, {steps}, {patch}, {window}"
            )
        self.patch, self.window = patch, window
        self.tower = nn.Sequential(conv_bn_act(in_channels, channels, 3), conv_bn_act(channels, channels, 3))
        self.inputs = nn.ModuleList(nn.Linear(channels * patch * patch, hidden) for _ in range(steps))
        self.embeddings = nn.Parameter(torch.zeros(steps, num_keypoints, hidden))
        self.outputs = nn.ModuleList(nn.Linear(hidden, 2) for _ in range(steps))
        self.act = nn.SiLU()
        for layer in self.outputs:
            # Start as the identity: refinement only moves a keypoint once it has learned where to.
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    @property
    def steps(self) -> int:
        return len(self.outputs)

    def forward(
        self,
        feature_map: Tensor,
        stride: float,
        keypoints: Tensor,
        image_index: Tensor,
        boxes: Tensor,
    ) -> list[Tensor]:
        """Refined ``(N, K, 2)`` keypoints after each step.

        Args:
            feature_map: ``(B, C, H, W)`` output of :attr:`tower`.
            stride: the map's stride in input pixels.
            keypoints: ``(N, K, 2)`` starting estimates in input pixels (not differentiated through:
                each step learns its own correction).
            image_index: ``(N,)`` image of each object in the batch.
            boxes: ``(N, 4)`` xyxy boxes that set each object's window.
        """
        num, num_keypoints = keypoints.shape[:2]
        if num == 0:
            return [keypoints] * self.steps
        # fp32, so that the gradients of overlapping samples add up at full precision.
        feature_map = feature_map.float()
        wh = (boxes[:, 2:] - boxes[:, :2]).clamp(min=1.0)
        radius = (self.window * wh.prod(dim=1).sqrt()).clamp(min=stride)[:, None, None]  # (N, 1, 1)
        index = image_index.to(feature_map.dtype)[:, None, None].expand(num, num_keypoints, 1)
        results = []
        current = keypoints.detach().float()
        for step in range(self.steps):
            # One patch x patch grid of bins per keypoint, sampled once at each bin's centre.
            rois = torch.cat([index, current - radius, current + radius], dim=-1).reshape(-1, 5)
            samples = roi_align(
                feature_map, rois, self.patch, spatial_scale=1.0 / stride, sampling_ratio=1, aligned=True
            )
            hidden = self.inputs[step](samples.reshape(num, num_keypoints, -1)) + self.embeddings[step]
            offset = self.outputs[step](self.act(hidden))
            refined = current + offset * radius
            results.append(refined)
            current = refined.detach()
        return results
