"""The pose head: box-relative keypoints, the ground-truth frame in training, the feature gradient."""

from __future__ import annotations

import pytest
import torch

from detect.models.heads import PoseHead
from detect.structures import FeatureSpec, KeypointInfo, Targets

SPECS = {"p3": FeatureSpec(16, 8), "p4": FeatureSpec(32, 16), "p5": FeatureSpec(32, 32)}
KEYPOINTS = KeypointInfo(("head", "left_hand", "right_hand"), ((1, 2), (1, 3)), (0.07, 0.07, 0.07), (1,))
BOX = [8.0, 10.0, 40.0, 58.0]
POSE = [[24.0, 14.0, 2.0], [36.0, 30.0, 2.0], [12.0, 30.0, 1.0]]


def features(seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {
        key: torch.rand(
            1, spec.channels, 64 // spec.stride, 64 // spec.stride, generator=generator
        ).requires_grad_()
        for key, spec in SPECS.items()
    }


def ramp(outputs, head: PoseHead) -> torch.Tensor:
    """Heatmaps that rise to the right and downwards: every keypoint goes to its window's corner."""
    height, width = outputs.refine_heatmaps.shape[-2:]
    ys, xs = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    return (50.0 * (xs + ys).float()).expand_as(outputs.refine_heatmaps).clone()


def targets() -> list[Targets]:
    return [Targets(torch.tensor([BOX]), torch.tensor([0]), keypoints=torch.tensor([POSE]))]


@pytest.mark.parametrize("share_levels", [False, True])
def test_keypoint_loss_trains_the_branch(share_levels: bool) -> None:
    torch.manual_seed(0)
    head = PoseHead(SPECS, num_classes=2, keypoints=KEYPOINTS, share_levels=share_levels)
    feats = features()
    losses = head.loss(head(feats), targets())
    assert losses["loss_keypoint"] > 0 and torch.isfinite(losses["loss_visibility"])
    losses["loss_keypoint"].backward()
    branch = head.keypoint_tower if share_levels else head.keypoint_branches
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in branch.parameters())


def test_exact_keypoints_in_the_ground_truth_frame_cost_nothing() -> None:
    head = PoseHead(SPECS, num_classes=2, keypoints=KEYPOINTS)
    outputs = head(features())
    x0, y0, x1, y1 = BOX
    pose = torch.tensor(POSE)
    raw = (pose[:, :2] - torch.tensor([(x0 + x1) / 2, (y0 + y1) / 2])) / torch.tensor([x1 - x0, y1 - y0])
    with torch.no_grad():
        outputs.keypoint_logits[..., :2] = raw
    losses = head.loss(outputs, targets())
    assert losses["loss_keypoint"].item() == pytest.approx(0.0, abs=1e-5)


def test_prediction_is_in_the_frame_of_the_anchors_own_box() -> None:
    head = PoseHead(SPECS, num_classes=2, keypoints=KEYPOINTS)
    outputs = head(features())
    with torch.no_grad():
        outputs.keypoint_logits.zero_()
    boxes = head.decode_boxes(outputs)
    keypoints = head.decode_keypoints(outputs, boxes)
    centres = (boxes[..., :2] + boxes[..., 2:]) / 2
    torch.testing.assert_close(keypoints, centres[:, :, None].expand_as(keypoints))


def keypoint_grad_on_features(**options) -> torch.Tensor:
    """Gradient of the keypoint loss on the shared features, for a head built with ``options``."""
    torch.manual_seed(0)
    head = PoseHead(SPECS, num_classes=2, keypoints=KEYPOINTS, **options)
    if head.refiner is not None:
        # As if trained: the zero-initialised heatmap layer would pass no gradient back at all.
        torch.nn.init.normal_(head.refiner.tower[-1].weight)
    feats = features()
    head.loss(head(feats), targets())["loss_keypoint"].backward()
    return torch.cat([f.grad.flatten() for f in feats.values()])


def test_feature_grad_scales_what_reaches_the_shared_features() -> None:
    torch.testing.assert_close(
        keypoint_grad_on_features(feature_grad=0.1),
        keypoint_grad_on_features(feature_grad=1.0) * 0.1,
        rtol=1e-4,
        atol=1e-7,
    )


def test_refinement_does_not_train_the_shared_features() -> None:
    torch.testing.assert_close(
        keypoint_grad_on_features(refine_steps=2), keypoint_grad_on_features(refine_steps=0)
    )


def test_feature_grad_out_of_range_is_refused() -> None:
    with pytest.raises(ValueError, match="feature_grad"):
        PoseHead(SPECS, num_classes=2, keypoints=KEYPOINTS, feature_grad=2.0)


def test_refiner_starts_as_the_identity() -> None:
    head = PoseHead(SPECS, num_classes=2, keypoints=KEYPOINTS, refine_steps=2)
    outputs = head(features())
    boxes = head.decode_boxes(outputs)
    head_without = PoseHead(SPECS, num_classes=2, keypoints=KEYPOINTS, refine_steps=0)
    head_without.load_state_dict(head.state_dict(), strict=False)
    coarse = head_without.decode_keypoints(outputs, boxes)
    torch.testing.assert_close(head.decode_keypoints(outputs, boxes), coarse)


def test_refiner_moves_keypoints_within_their_window() -> None:
    head = PoseHead(SPECS, num_classes=2, keypoints=KEYPOINTS, refine_window=0.25, refine_patch=4)
    outputs = head(features())
    outputs.refine_heatmaps = ramp(outputs, head)
    keypoints = torch.tensor([[[10.0, 10.0], [14.0, 20.0], [20.0, 14.0]]])
    box = torch.tensor([[0.0, 0.0, 64.0, 64.0]])  # sqrt(w * h) = 64: a +-16 px window
    first, second = (step.keypoints for step in head.refine(outputs, keypoints, torch.tensor([0]), box))
    # The last of four bins per side is centred 3/4 of the half-size from the middle: 12 px; the
    # second step starts where the first ended.
    torch.testing.assert_close(first, keypoints + 12.0, atol=1e-3, rtol=0)
    torch.testing.assert_close(second, keypoints + 24.0, atol=1e-3, rtol=0)


@pytest.mark.parametrize("upsample", [1, 2])
def test_refinement_is_trained_and_used_at_prediction(upsample: int) -> None:
    torch.manual_seed(0)
    head = PoseHead(SPECS, num_classes=2, keypoints=KEYPOINTS, refine_steps=1, refine_upsample=upsample)
    outputs = head(features())
    assert outputs.refine_heatmaps.shape[-1] == 8 * upsample  # p3 of a 64 px input, made finer
    head.loss(outputs, targets())["loss_keypoint"].backward()
    heatmap_conv = [layer for layer in head.refiner.tower if isinstance(layer, torch.nn.Conv2d)][-1]
    assert heatmap_conv.weight.grad.abs().sum() > 0
    head.eval()
    with torch.no_grad():
        outputs = head(features())
        outputs.refine_heatmaps = ramp(outputs, head)
        refined = head.postprocess(outputs, [(64, 64)])[0].keypoints
        every_anchor = head.decode_keypoints(outputs)[0]  # (A, K, 2), refined
        head.refiner = None
        coarse = head.postprocess(outputs, [(64, 64)])[0].keypoints
    assert len(coarse) > 0
    # Each detection carries the refined keypoints of its anchor, not the regressed ones.
    gap = (refined[:, None, :, :2] - every_anchor[None]).abs().flatten(2).amax(dim=2)
    assert (gap.amin(dim=1) < 1e-4).all()
    assert (refined[..., :2] - coarse[..., :2]).abs().amax() > 1.0
    torch.testing.assert_close(refined[..., 2], coarse[..., 2])


def test_every_refiner_parameter_gets_a_gradient_without_keypoints() -> None:
    # DDP needs every parameter in the graph, also on a batch without any person.
    head = PoseHead(SPECS, num_classes=2, keypoints=KEYPOINTS)
    empty = [Targets(torch.zeros(0, 4), torch.zeros(0, dtype=torch.long), keypoints=torch.zeros(0, 3, 3))]
    losses = head.loss(head(features()), empty)
    sum(losses.values()).backward()
    assert all(p.grad is not None for p in head.refiner.parameters())


def test_refiner_heatmaps_come_from_the_finest_level() -> None:
    # One heatmap per keypoint and step, on p3 of a 64 px input.
    head = PoseHead(SPECS, num_classes=2, keypoints=KEYPOINTS, refine_channels=16, refine_steps=2)
    assert head(features()).refine_heatmaps.shape == (1, 6, 8, 8)
    assert head.refiner.tower[0][0].out_channels == 16
    assert PoseHead(SPECS, num_classes=2, keypoints=KEYPOINTS, refine_steps=0).refiner is None


def test_refiner_may_read_a_backbone_level_the_neck_leaves_out() -> None:
    from functools import partial

    from detect.models import PAN, CSPDarknet, Detector

    backbone = CSPDarknet(depth_multiple=0.33, width_multiple=0.25, out_features=("p2", "p3", "p4", "p5"))
    head = partial(PoseHead, keypoints=KEYPOINTS, refine_level="p2", refine_channels=8)
    model = Detector(backbone, PAN, head, num_classes=2, keypoints=KEYPOINTS)
    assert model.head.refine_stride == 4 and "p2" not in model.neck.out_specs
    outputs = model(torch.rand(1, 3, 64, 64))
    assert outputs.refine_heatmaps.shape == (1, 6, 16, 16)  # stride 4, two steps of three keypoints
    losses = model.loss(outputs, targets())
    sum(losses.values()).backward()
    assert model.head.refiner.tower[-1].weight.grad.abs().sum() > 0


def test_refine_level_must_be_produced() -> None:
    with pytest.raises(ValueError, match="out_features"):
        PoseHead(SPECS, num_classes=2, keypoints=KEYPOINTS, refine_level="p2")


def test_refiner_reads_coarser_context_without_training_it() -> None:
    # p4 upsampled to p3 joins the refiner's input: the heatmaps stay on p3 but depend on p4.
    torch.manual_seed(0)
    head = PoseHead(SPECS, num_classes=2, keypoints=KEYPOINTS, refine_channels=8, refine_context=["p4", "p5"])
    assert head.refiner.tower[0][0].in_channels == 16 + 32 + 32
    head.refiner.tower[-1].weight.data.normal_()  # zero-initialised: flat heatmaps would hide the context
    inputs = features()
    before = head(inputs).refine_heatmaps
    assert before.shape == (1, 6, 8, 8)
    changed = dict(inputs, p4=torch.rand_like(inputs["p4"]))
    assert not torch.allclose(head(changed).refine_heatmaps, before)
    head(inputs).refine_heatmaps.sum().backward()
    assert inputs["p4"].grad is None and inputs["p3"].grad is None


@pytest.mark.parametrize(("context", "message"), [("p2", "not among"), ("p3", "coarser")])
def test_refine_context_must_be_a_coarser_level(context: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        PoseHead(SPECS, num_classes=2, keypoints=KEYPOINTS, refine_context=context)


def test_separable_refiner_tower_is_cheaper_and_trains() -> None:
    def tower_params(**kwargs) -> int:
        head = PoseHead(SPECS, num_classes=2, keypoints=KEYPOINTS, refine_channels=32, **kwargs)
        return sum(p.numel() for p in head.refiner.tower.parameters())

    assert tower_params(refine_tower="separable") < tower_params(refine_tower="conv") / 3
    torch.manual_seed(0)
    head = PoseHead(SPECS, num_classes=2, keypoints=KEYPOINTS, refine_tower="separable", refine_context="p4")
    outputs = head(features())
    assert outputs.refine_heatmaps.shape == (1, 6, 8, 8)
    sum(head.loss(outputs, targets()).values()).backward()
    assert all(p.grad is not None for p in head.refiner.parameters())
    with pytest.raises(ValueError, match="tower"):
        PoseHead(SPECS, num_classes=2, keypoints=KEYPOINTS, refine_tower="dense")
