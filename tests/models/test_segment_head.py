"""The segment head's prototypes: from the finest predicted level, or built at a finer backbone level."""

from __future__ import annotations

import pytest
import torch

from detect.models.heads import SegmentHead
from detect.models.heads.postprocess import assemble_masks, crop_to_boxes, logit_threshold
from detect.structures import FeatureSpec, Targets

SPECS = {
    "p2": FeatureSpec(8, 4),
    "p3": FeatureSpec(16, 8),
    "p4": FeatureSpec(32, 16),
    "p5": FeatureSpec(32, 32),
}
SIZE = 64


def features(seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {
        key: torch.rand(
            1, spec.channels, SIZE // spec.stride, SIZE // spec.stride, generator=generator
        ).requires_grad_()
        for key, spec in SPECS.items()
    }


def targets() -> list[Targets]:
    masks = torch.zeros((1, SIZE, SIZE), dtype=torch.uint8)
    masks[0, 12:50, 10:38] = 1
    return [Targets(torch.tensor([[10.0, 12.0, 38.0, 50.0]]), torch.tensor([0]), masks=masks)]


@pytest.mark.parametrize(
    ("options", "stride"),
    [
        ({}, 8),
        ({"proto_upsample": 2}, 4),
        ({"proto_level": "p2"}, 4),
        ({"proto_level": "auto"}, 4),
        ({"proto_level": "auto", "proto_upsample": 2}, 4),
    ],
)
def test_prototypes_come_at_the_stride_asked_for(options: dict, stride: int) -> None:
    head = SegmentHead(SPECS, num_classes=2, num_protos=4, **options)
    outputs = head(features())
    assert head.proto_stride == stride
    assert outputs.protos.shape == (1, 4, SIZE // stride, SIZE // stride)
    losses = head.loss(outputs, targets())
    assert losses["loss_mask"] > 0
    head.eval()
    with torch.no_grad():
        detections = head.postprocess(head(features()), [(SIZE, SIZE)])
    assert detections[0].masks.shape[-2:] == (SIZE, SIZE)


def test_auto_prototypes_fall_back_to_the_finest_predicted_level_without_a_finer_one() -> None:
    # A backbone that returns no p2 (ResNets, ViTs, most timm models) still gets a segment head.
    specs = {key: spec for key, spec in SPECS.items() if key != "p2"}
    head = SegmentHead(specs, num_classes=2, num_protos=4, proto_level="auto")
    assert head.proto_stride == 8 and head.proto_inputs == ["p3"]
    auto = SegmentHead(SPECS, num_classes=2, num_protos=4, proto_level="auto")
    assert auto.proto_inputs == ["p3", "p2"]


@pytest.mark.parametrize("detail_grad", [0.0, 0.5])
def test_the_mask_loss_reaches_the_detail_level_only_when_asked(detail_grad: float) -> None:
    torch.manual_seed(0)
    head = SegmentHead(SPECS, num_classes=2, num_protos=4, proto_level="p2", detail_grad=detail_grad)
    feats = features()
    head.loss(head(feats), targets())["loss_mask"].backward()
    reached = feats["p2"].grad is not None and feats["p2"].grad.abs().sum() > 0
    assert reached == (detail_grad > 0)
    # The prototypes' own layers on the detail level train either way.
    assert head.protos.lateral[0].weight.grad.abs().sum() > 0
    assert feats["p3"].grad.abs().sum() > 0


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"proto_level": "p1"}, "proto_level 'p1' is not among"),
        ({"proto_level": "p2", "proto_upsample": 2}, "exclude each other"),
        ({"proto_level": "p2", "detail_grad": 2.0}, "detail_grad must be in"),
        ({"proto_level": "p4"}, "must be finer than"),
    ],
)
def test_bad_prototype_settings_are_named(options: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SegmentHead(SPECS, num_classes=2, **options)


def dense_mask_loss(head: SegmentHead, outputs, targets: list[Targets], assignment) -> torch.Tensor:
    """The mask loss by its definition: BCE over every prototype pixel of every positive, weighted by
    whether the pixel's centre lies in the object's box."""
    protos = outputs.protos.float()
    height, width = protos.shape[-2:]
    total = []
    for image, anchor in assignment.foreground.nonzero().tolist():
        target_index = int(assignment.gt_index[image, anchor])
        logits = (outputs.mask_coefs[image, anchor].float() @ protos[image].flatten(1)).view(height, width)
        gt = torch.nn.functional.adaptive_avg_pool2d(
            targets[image].masks[target_index][None, None].float(), (height, width)
        )[0, 0]
        box = targets[image].boxes[target_index] / head.proto_stride
        inside = crop_to_boxes(torch.ones(1, height, width), box[None])[0]
        per_pixel = torch.nn.functional.binary_cross_entropy_with_logits(logits, gt, reduction="none")
        total.append((per_pixel * inside).sum() / inside.sum().clamp(min=1.0))
    return torch.stack(total).mean()


def test_the_mask_loss_on_the_pixels_in_each_box_equals_its_dense_definition() -> None:
    torch.manual_seed(0)
    head = SegmentHead(SPECS, num_classes=2, num_protos=4, proto_level="p2", topk=3)
    batch = []
    # Boxes of many sizes, edges on and between pixel centres, one clipped at the border, one
    # image with a single object and one with three.
    for boxes in (
        [[10.0, 12.0, 38.0, 50.0]],
        [[0.0, 0.0, 64.0, 64.0], [2.0, 6.0, 10.0, 9.0], [50.5, 40.0, 64.0, 63.9]],
    ):
        boxes = torch.tensor(boxes)
        masks = (torch.rand(len(boxes), SIZE, SIZE) > 0.5).to(torch.uint8)
        batch.append(Targets(boxes, torch.zeros(len(boxes), dtype=torch.long), masks=masks))
    feats = {key: torch.cat([value, features(seed=1)[key]]) for key, value in features().items()}
    outputs = head(feats)
    assignment, _ = head.assign(outputs, batch)
    assert assignment.foreground.sum() > 4
    fast = head.mask_loss(outputs, batch, assignment)
    reference = dense_mask_loss(head, outputs, batch, assignment)
    torch.testing.assert_close(fast, reference, rtol=1e-5, atol=1e-6)
    fast_grad = torch.autograd.grad(fast, outputs.protos, retain_graph=True)[0]
    reference_grad = torch.autograd.grad(reference, outputs.protos)[0]
    torch.testing.assert_close(fast_grad, reference_grad, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("threshold", [0.5, 0.3, 0.9])
def test_masks_thresholded_on_logits_are_those_of_the_sigmoid(threshold: float) -> None:
    """assemble_masks compares logits with logit(threshold) and crops in bool: the masks are the
    probability rule's, cropped by multiplication as before, pixel for pixel."""
    generator = torch.Generator().manual_seed(0)
    coefs = torch.randn(6, 8, generator=generator)
    protos = torch.randn(8, 24, 24, generator=generator)
    boxes = torch.tensor([[0.0, 0.0, 96.0, 96.0], [10.3, 4.0, 50.0, 33.7], [60.0, 60.0, 61.0, 95.0]]).repeat(
        2, 1
    )
    masks = assemble_masks(coefs, protos, boxes, (96, 96), threshold)
    logits = (coefs @ protos.flatten(1)).view(-1, 24, 24)
    logits = torch.nn.functional.interpolate(
        logits[None], size=(96, 96), mode="bilinear", align_corners=False
    )[0]
    expected = crop_to_boxes((logits.sigmoid() > threshold).float(), boxes) > 0
    assert masks.dtype == torch.bool and masks.any()
    torch.testing.assert_close(masks, expected, rtol=0, atol=0)


def test_logit_threshold_covers_the_ends() -> None:
    assert logit_threshold(0.5) == 0.0
    assert logit_threshold(0.0) == float("-inf") and logit_threshold(1.0) == float("inf")
    assert torch.sigmoid(torch.tensor(logit_threshold(0.8) + 1e-4)) > 0.8
