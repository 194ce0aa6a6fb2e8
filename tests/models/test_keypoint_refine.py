"""The keypoint refiner: each keypoint moves to the soft-argmax of its own heatmap in its window."""

import torch

from detect.models.heads.keypoint_refine import KeypointRefiner


def test_soft_argmax_moves_each_keypoint_to_the_peak_of_its_channel() -> None:
    refiner = KeypointRefiner(8, num_keypoints=2, patch=5, window=1.0)
    stride = 8.0
    # A 20 x 20 box: the window spans +-20 px, read at offsets -16, -8, 0, 8, 16 from the estimate,
    # which from (100, 100) fall on the centres of feature cells 10 .. 14.
    heatmaps = torch.zeros(1, 2, 32, 32)
    heatmaps[0, 0, 11, 13] = 40.0  # keypoint 0: cell (x 13, y 11) -> pixel (108, 92)
    heatmaps[0, 1, 14, 10] = 40.0  # keypoint 1: cell (x 10, y 14) -> pixel (84, 116)
    heatmaps[0, 1, 11, 13] = -40.0  # keypoint 0's peak means nothing to keypoint 1
    start = torch.full((1, 2, 2), 100.0)
    box = torch.tensor([[90.0, 90.0, 110.0, 110.0]])
    (refined,) = refiner(heatmaps, stride, start, torch.tensor([0]), box)
    torch.testing.assert_close(refined, torch.tensor([[[108.0, 92.0], [84.0, 116.0]]]), atol=1e-3, rtol=0)


def test_soft_argmax_starts_as_the_identity_and_learns_its_heatmaps() -> None:
    torch.manual_seed(0)
    refiner = KeypointRefiner(8, num_keypoints=3, patch=7)
    heatmaps = refiner.tower(torch.randn(2, 8, 16, 16))
    start = torch.rand(4, 3, 2) * 100 + 10
    boxes = torch.tensor([[0.0, 0.0, 60.0, 80.0]]).expand(4, 4)
    (refined,) = refiner(heatmaps, 8.0, start, torch.tensor([0, 0, 1, 1]), boxes)
    torch.testing.assert_close(refined, start)
    refined.sum().backward()
    assert refiner.tower[-1].weight.grad.abs().sum() > 0
