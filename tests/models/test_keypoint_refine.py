"""The keypoint refiner: each keypoint moves to the soft-argmax of its own heatmap in its window."""

import pytest
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


@pytest.mark.parametrize("upsample", [1, 2])
def test_soft_argmax_starts_as_the_identity_and_learns_its_heatmaps(upsample: int) -> None:
    torch.manual_seed(0)
    refiner = KeypointRefiner(8, num_keypoints=3, patch=7, upsample=upsample)
    heatmaps = refiner.tower(torch.randn(2, 8, 16, 16))
    assert heatmaps.shape == (2, 3, 16 * upsample, 16 * upsample)
    start = torch.rand(4, 3, 2) * 100 + 10
    boxes = torch.tensor([[0.0, 0.0, 60.0, 80.0]]).expand(4, 4)
    (refined,) = refiner(heatmaps, 8.0, start, torch.tensor([0, 0, 1, 1]), boxes)
    torch.testing.assert_close(refined, start)
    refined.sum().backward()
    heatmap_conv = [layer for layer in refiner.tower if isinstance(layer, torch.nn.Conv2d)][-1]
    assert heatmap_conv.weight.grad.abs().sum() > 0


def test_finer_heatmaps_keep_the_window_of_the_map_they_are_made_from() -> None:
    config = KeypointRefiner(8, num_keypoints=1, upsample=2).config(4.0)
    assert (config.stride, config.min_radius) == (2.0, 4.0)
    # A 10 x 10 figure: 0.15 * 10 = 1.5 px, raised to one stride of the stride-4 map.
    refiner = KeypointRefiner(8, num_keypoints=1, window=0.15, upsample=2)
    box = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    (step,) = refiner.run(torch.zeros(1, 1, 32, 32), 4.0, torch.full((1, 1, 2), 5.0), torch.tensor([0]), box)
    assert float(step.radius) == 4.0


def test_heatmap_loss_is_lowest_for_a_peak_on_the_true_keypoint() -> None:
    refiner = KeypointRefiner(8, num_keypoints=1, patch=5, window=1.0)
    start, box = torch.full((1, 1, 2), 100.0), torch.tensor([[90.0, 90.0, 110.0, 110.0]])
    truth = torch.tensor([[[108.0, 92.0]]])  # on the grid: cell (x 13, y 11) of a stride-8 map
    labelled = torch.ones(1, 1, dtype=torch.bool)

    def loss_with_peak_at(row: int, column: int) -> float:
        heatmaps = torch.zeros(1, 1, 32, 32)
        heatmaps[0, 0, row, column] = 5.0
        steps = refiner.run(heatmaps, 8.0, start, torch.tensor([0]), box)
        return float(refiner.heatmap_loss(steps, truth, labelled))

    on_truth = loss_with_peak_at(11, 13)
    assert on_truth < loss_with_peak_at(12, 12) < loss_with_peak_at(14, 10)
    # Unlabelled keypoints do not count.
    steps = refiner.run(torch.zeros(1, 1, 32, 32), 8.0, start, torch.tensor([0]), box)
    assert float(refiner.heatmap_loss(steps, truth, ~labelled)) == 0.0


@pytest.mark.parametrize("upsample", [1, 2])
def test_heatmap_loss_gradient_pulls_the_soft_argmax_towards_the_truth(upsample: int) -> None:
    torch.manual_seed(0)
    refiner = KeypointRefiner(4, num_keypoints=2, patch=7, upsample=upsample)
    features = torch.randn(1, 4, 16, 16)
    start = torch.tensor([[[60.0, 60.0], [40.0, 70.0]]])
    box = torch.tensor([[30.0, 40.0, 90.0, 100.0]])
    truth = start + torch.tensor([[[5.0, -4.0], [-6.0, 3.0]]])
    labelled = torch.ones(1, 2, dtype=torch.bool)
    optimizer = torch.optim.SGD(refiner.parameters(), lr=0.5)
    for _ in range(30):
        steps = refiner.run(refiner.tower(features), 8.0, start, torch.tensor([0]), box)
        optimizer.zero_grad()
        refiner.heatmap_loss(steps, truth, labelled).backward()
        optimizer.step()
    (refined,) = refiner(refiner.tower(features), 8.0, start, torch.tensor([0]), box)
    assert (refined - truth).norm(dim=-1).amax() < 0.5 * (start - truth).norm(dim=-1).amin()
