"""The detect head's starting predictions."""

import pytest
import torch

from detect.models.heads import DetectHead
from detect.structures import FeatureSpec

SPECS = {"p3": FeatureSpec(16, 8), "p4": FeatureSpec(32, 16), "p5": FeatureSpec(32, 32)}


def test_zero_pred_init_gives_every_anchor_the_same_start_and_still_learns() -> None:
    torch.manual_seed(0)
    head = DetectHead(SPECS, num_classes=3, pred_init="zero")
    features = {k: torch.randn(2, s.channels, 64 // s.stride, 64 // s.stride) for k, s in SPECS.items()}
    outputs = head(features)
    # Per level the logits are the biases alone: the same at every anchor of every image.
    first = outputs.cls_logits[:, : 8 * 8]
    assert torch.equal(first, first[:1, :1].expand_as(first))
    assert torch.equal(outputs.box_logits, outputs.box_logits[:1, :1].expand_as(outputs.box_logits))
    outputs.cls_logits.sum().backward()
    assert all(branch[-1].weight.grad.abs().sum() > 0 for branch in head.cls_branches)


def test_default_pred_init_differs_by_anchor() -> None:
    torch.manual_seed(0)
    head = DetectHead(SPECS, num_classes=3)
    features = {k: torch.randn(1, s.channels, 64 // s.stride, 64 // s.stride) for k, s in SPECS.items()}
    logits = head(features).cls_logits
    assert logits.std(dim=1).amin() > 0


def test_unknown_pred_init_is_refused() -> None:
    with pytest.raises(ValueError, match="pred_init"):
        DetectHead(SPECS, num_classes=3, pred_init="small")
