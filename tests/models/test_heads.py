"""Detection head and assigner: losses, gradients, postprocessing and the assignment rules."""

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from detect.models.heads import DetectHead, TaskAlignedAssigner
from detect.models.heads.assigner import pairwise_box_iou
from detect.models.heads.detection import INITIAL_DISTANCE, pad_targets
from detect.structures import FeatureSpec, Targets

SPECS = {"p3": FeatureSpec(16, 8), "p4": FeatureSpec(16, 16), "p5": FeatureSpec(16, 32)}


def features(batch: int = 2, size: int = 64) -> dict[str, torch.Tensor]:
    return {
        k: torch.rand(batch, 16, size // s.stride, size // s.stride, requires_grad=True)
        for k, s in SPECS.items()
    }


def test_loss_is_finite_and_reaches_the_inputs() -> None:
    head = DetectHead(SPECS, num_classes=3)
    feats = features()
    targets = [Targets(torch.tensor([[4.0, 6.0, 40.0, 50.0]]), torch.tensor([2])), Targets.empty()]
    losses = head.loss(head(feats), targets)
    assert set(losses) == {"loss_cls", "loss_box", "loss_dfl"}
    assert all(torch.isfinite(v) for v in losses.values())
    assert losses["loss_box"] > 0 and losses["loss_dfl"] > 0
    sum(losses.values()).backward()
    assert all(f.grad is not None and f.grad.abs().sum() > 0 for f in feats.values())


def test_separable_branches_train_and_cost_less() -> None:
    wide = {"p3": FeatureSpec(64, 8), "p4": FeatureSpec(128, 16), "p5": FeatureSpec(256, 32)}
    feats = {k: torch.rand(1, s.channels, 256 // s.stride, 256 // s.stride) for k, s in wide.items()}
    flops = {}
    for kind in ("conv", "separable"):
        head = DetectHead(wide, num_classes=3, box_branch=kind, cls_branch=kind)
        with FlopCounterMode(display=False) as counter:
            outputs = head(feats)
        flops[kind] = counter.get_total_flops()
        targets = [Targets(torch.tensor([[4.0, 6.0, 140.0, 150.0]]), torch.tensor([1]))]
        losses = head.loss(outputs, targets)
        sum(losses.values()).backward()
        assert all(torch.isfinite(v) for v in losses.values())
        assert all(p.grad is not None for p in head.parameters() if p.requires_grad)
    assert flops["separable"] < 0.3 * flops["conv"]
    with pytest.raises(ValueError, match="cls_branch"):
        DetectHead(wide, num_classes=3, cls_branch="dense")


def test_direct_regression_head_is_narrow_and_learns_distances() -> None:
    """reg_max=1: four outputs per anchor, softplus distances, an L1 term in place of the DFL."""
    wide = {"p3": FeatureSpec(64, 8), "p4": FeatureSpec(128, 16), "p5": FeatureSpec(256, 32)}
    head = DetectHead(wide, num_classes=3, reg_max=1).eval()
    assert all(branch[-1].out_channels == 4 and branch[0].out_channels == 16 for branch in head.box_branches)
    zeros = {k: torch.zeros(1, s.channels, 64 // s.stride, 64 // s.stride) for k, s in wide.items()}
    outputs = head(zeros)
    boxes = head.decode_boxes(outputs)[0]
    half = INITIAL_DISTANCE * outputs.strides
    torch.testing.assert_close(boxes, torch.cat([outputs.anchors - half, outputs.anchors + half], dim=-1))

    head.train()
    feats = {
        k: torch.rand(2, s.channels, 64 // s.stride, 64 // s.stride, requires_grad=True)
        for k, s in wide.items()
    }
    targets = [Targets(torch.tensor([[4.0, 6.0, 40.0, 50.0]]), torch.tensor([2])), Targets.empty()]
    losses = head.loss(head(feats), targets)
    assert set(losses) == {"loss_cls", "loss_box", "loss_dist"}
    assert losses["loss_dist"] > 0
    sum(losses.values()).backward()
    assert all(f.grad is not None and f.grad.abs().sum() > 0 for f in feats.values())
    with pytest.raises(ValueError, match="reg_max"):
        DetectHead(wide, num_classes=3, reg_max=0)


def test_loss_without_any_object_trains_classification_only() -> None:
    head = DetectHead(SPECS, num_classes=3)
    losses = head.loss(head(features()), [Targets.empty(), Targets.empty()])
    assert losses["loss_box"] == 0 and losses["loss_dfl"] == 0 and losses["loss_cls"] > 0
    sum(losses.values()).backward()


def test_postprocess_shapes_and_limits() -> None:
    head = DetectHead(SPECS, num_classes=3, max_det=5).eval()
    detections = head.postprocess(head(features(batch=3)), [(64, 64)] * 3)
    assert len(detections) == 3
    for det in detections:
        assert det.boxes.shape == (len(det), 4) and det.scores.shape == det.labels.shape == (len(det),)
        assert len(det) <= 5
        assert (det.boxes[:, 2:] >= det.boxes[:, :2]).all() and det.boxes.min() >= 0 and det.boxes.max() <= 64
        assert det.labels.max() < 3 if len(det) else True


def test_assigner_picks_topk_anchors_inside_the_object() -> None:
    anchors = torch.tensor([[x + 0.5, 0.5] for x in range(10)], dtype=torch.float32)
    pred_boxes = torch.cat([anchors - 1, anchors + 1], dim=1)[None]
    pred_scores = torch.full((1, 10, 2), 0.5)
    gt_boxes = torch.tensor([[[2.0, 0.0, 6.0, 1.0]]])
    assignment = TaskAlignedAssigner(topk=2)(
        pred_scores, pred_boxes, anchors, torch.tensor([[1]]), gt_boxes, torch.tensor([[True]])
    )
    positives = assignment.foreground[0].nonzero().flatten().tolist()
    assert len(positives) == 2 and all(2 <= p <= 5 for p in positives)
    assert assignment.scores[0, positives, 1].gt(0).all() and assignment.scores[0, :, 0].eq(0).all()
    assert assignment.scores.max() <= 1.0 + 1e-6


def test_assigner_gives_shared_anchor_to_the_best_overlap() -> None:
    anchors = torch.tensor([[5.0, 5.0]])
    pred_boxes = torch.tensor([[[0.0, 0.0, 10.0, 10.0]]])
    gt_boxes = torch.tensor([[[0.0, 0.0, 10.0, 9.0], [2.0, 2.0, 30.0, 30.0]]])
    assignment = TaskAlignedAssigner(topk=1)(
        torch.full((1, 1, 2), 0.5),
        pred_boxes,
        anchors,
        torch.tensor([[0, 1]]),
        gt_boxes,
        torch.tensor([[True, True]]),
    )
    assert (
        assignment.gt_index[0, 0] == 0 and assignment.scores[0, 0, 0] > 0 and assignment.scores[0, 0, 1] == 0
    )


def test_padding_entries_are_never_assigned() -> None:
    targets = [Targets(torch.tensor([[0.0, 0.0, 32.0, 32.0]]), torch.tensor([0])), Targets.empty()]
    boxes, labels, valid = pad_targets(targets, torch.device("cpu"))
    assert boxes.shape == (2, 1, 4) and valid.tolist() == [[True], [False]]
    head = DetectHead(SPECS, num_classes=2)
    assignment, _ = head.assign(head(features()), targets)
    assert assignment.foreground[0].any() and not assignment.foreground[1].any()


def test_pairwise_iou_matches_torchvision() -> None:
    from torchvision.ops import box_iou

    a = torch.tensor([[0.0, 0.0, 10.0, 10.0], [5.0, 5.0, 15.0, 20.0]])
    b = torch.tensor([[0.0, 0.0, 5.0, 5.0], [2.0, 3.0, 12.0, 14.0], [20.0, 20.0, 30.0, 30.0]])
    assert torch.allclose(pairwise_box_iou(a[None], b[None])[0], box_iou(a, b), atol=1e-6)
