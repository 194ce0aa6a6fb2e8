"""Every backbone x neck from the real configs: forward, loss, backward, postprocess at 128 px."""

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from detect.inference.checkpoint import build_from_config
from detect.structures import KeypointInfo, Targets
from tests.conftest import compose_config, options

KEYPOINTS = KeypointInfo(("head", "left_hand", "right_hand"), ((1, 2), (1, 3)), (0.07, 0.07, 0.07), (1,))
LOSS_KEYS = {
    "detect": {"loss_cls", "loss_box", "loss_dist"},  # reg_max=1: an L1 distance term, no DFL
    "segment": {"loss_cls", "loss_box", "loss_dist", "loss_mask"},
    "pose": {"loss_cls", "loss_box", "loss_dist", "loss_keypoint", "loss_visibility", "loss_heatmap"},
}


def build(backbone: str, neck: str, head: str = "detect", num_classes: int = 4):
    cfg = compose_config([f"backbone={backbone}", f"neck={neck}", f"head={head}"])
    return instantiate(cfg.model)(num_classes=num_classes, keypoints=KEYPOINTS)


def make_targets(boxes: list[list[float]], labels: list[int], size: int = 128) -> Targets:
    box_tensor = torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)
    masks = torch.zeros((len(boxes), size, size), dtype=torch.uint8)
    keypoints = torch.zeros((len(boxes), 3, 3))
    for i, (x0, y0, x1, y1) in enumerate(box_tensor.int().tolist()):
        masks[i, y0 + 2 : y1 - 2, x0 + 2 : x1 - 2] = 1
        keypoints[i] = torch.tensor(
            [[(x0 + x1) / 2, y0 + 3, 2], [x1 - 3, (y0 + y1) / 2, 2], [x0 + 3, (y0 + y1) / 2, 1]]
        )
    return Targets(box_tensor, torch.tensor(labels, dtype=torch.long), masks=masks, keypoints=keypoints)


# classify is a head for pre-training backbones, with a model of its own (tests/tasks/test_classify.py).
DETECTION_HEADS = [head for head in options("head") if head != "classify"]

# The whole catalogue runs in the full suite; the fast part keeps one light backbone per adapter.
FAST_BACKBONES = {"cspdarknet_n", "resnet18", "mobilenet_v3_small", "vit_t", "timm"}
BACKBONES = [
    name if name in FAST_BACKBONES else pytest.param(name, marks=pytest.mark.slow)
    for name in options("backbone")
]


@pytest.mark.parametrize("head", DETECTION_HEADS)
@pytest.mark.parametrize("neck", options("neck"))
@pytest.mark.parametrize("backbone", BACKBONES)
def test_compose_forward_loss_backward(backbone: str, neck: str, head: str) -> None:
    model = build(backbone, neck, head)
    images = torch.rand(2, 3, 128, 128)
    # One image with objects, one with none: a half-empty batch.
    targets = [
        make_targets([[10.0, 12.0, 60.0, 90.0], [70.0, 5.0, 120.0, 40.0]], [0, 3]),
        make_targets([], []),
    ]
    losses = model.loss(model(images), targets)
    assert set(losses) == LOSS_KEYS[head]
    assert all(torch.isfinite(v) for v in losses.values())
    if head != "detect":
        extra = "loss_mask" if head == "segment" else "loss_keypoint"
        assert losses[extra] > 0
    sum(losses.values()).backward()
    grads = [p.grad for p in model.backbone.parameters() if p.requires_grad]
    assert any(g is not None and g.abs().sum() > 0 for g in grads), "no gradient reached the backbone"
    model.eval()
    with torch.no_grad():
        detections = model.postprocess(model(images), [(128, 128)] * 2)
    assert len(detections) == 2
    for det in detections:
        assert det.boxes.shape == (len(det), 4)
        if head == "segment":
            assert det.masks.shape == (len(det), 128, 128) and det.masks.dtype == torch.bool
        if head == "pose":
            assert det.keypoints.shape == (len(det), 3, 3)


@pytest.mark.parametrize("head", DETECTION_HEADS)
def test_empty_images_do_not_crash(head: str) -> None:
    model = build("cspdarknet_n", "pan", head)
    losses = model.loss(model(torch.rand(2, 3, 64, 64)), [make_targets([], [], 64), make_targets([], [], 64)])
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()


def test_pose_head_needs_keypoint_metadata() -> None:
    cfg = compose_config(["head=pose"])
    with pytest.raises(ValueError, match="declare keypoints"):
        instantiate(cfg.model)(num_classes=2)


def test_batch_of_one_and_uint8_input() -> None:
    model = build("cspdarknet_n", "pan").eval()
    with torch.no_grad():
        detections = model.postprocess(
            model(torch.randint(0, 255, (1, 3, 96, 160), dtype=torch.uint8)), [(96, 160)]
        )
    assert len(detections) == 1


def test_input_size_must_be_a_multiple_of_the_stride() -> None:
    model = build("cspdarknet_n", "pan")
    with pytest.raises(ValueError, match="not a multiple of 32"):
        model(torch.rand(1, 3, 97, 131))


def test_batchnorm_settings_reach_every_layer_and_survive_the_checkpoint_config() -> None:
    cfg = compose_config(["model.batchnorm.eps=0.001", "model.batchnorm.momentum=0.03"])
    model = instantiate(cfg.model)(num_classes=2)
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(norms) > 20 and all((m.eps, m.momentum) == (0.001, 0.03) for m in norms)
    # A deployed model is rebuilt from the saved config without Hydra and normalizes the same.
    rebuilt = build_from_config(OmegaConf.to_container(cfg.model, resolve=True))(num_classes=2)
    assert all(m.eps == 0.001 for m in rebuilt.modules() if isinstance(m, torch.nn.BatchNorm2d))
    default = instantiate(compose_config([]).model)(num_classes=2)
    assert all(
        (m.eps, m.momentum) == (1e-5, 0.1) for m in default.modules() if isinstance(m, torch.nn.BatchNorm2d)
    )
    with pytest.raises(ValueError, match="model.batchnorm.momentum must be in"):
        instantiate(compose_config(["model.batchnorm.momentum=1.5"]).model)(num_classes=2)
