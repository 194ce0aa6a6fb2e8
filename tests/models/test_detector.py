"""Every backbone x neck from the real configs: forward, loss, backward, postprocess at 128 px."""

import pytest
import torch
from hydra.utils import instantiate

from detect.structures import Targets
from tests.conftest import compose_config, options


def build(backbone: str, neck: str, head: str = "detect", num_classes: int = 4):
    cfg = compose_config([f"backbone={backbone}", f"neck={neck}", f"head={head}"])
    return instantiate(cfg.model)(num_classes=num_classes)


@pytest.mark.parametrize("neck", options("neck"))
@pytest.mark.parametrize("backbone", options("backbone"))
def test_compose_forward_loss_backward(backbone: str, neck: str) -> None:
    model = build(backbone, neck)
    images = torch.rand(2, 3, 128, 128)
    # One image with objects, one with none: a half-empty batch.
    targets = [Targets(torch.tensor([[10.0, 12.0, 60.0, 90.0], [70.0, 5.0, 120.0, 40.0]]), torch.tensor([0, 3])), Targets.empty()]
    losses = model.loss(model(images), targets)
    assert set(losses) == {"loss_cls", "loss_box", "loss_dfl"}
    total = sum(losses.values())
    assert torch.isfinite(total)
    total.backward()
    grads = [p.grad for p in model.backbone.parameters() if p.requires_grad]
    assert any(g is not None and g.abs().sum() > 0 for g in grads), "no gradient reached the backbone"
    model.eval()
    with torch.no_grad():
        detections = model.postprocess(model(images), [(128, 128)] * 2)
    assert len(detections) == 2 and all(d.boxes.shape[-1] == 4 for d in detections)


def test_batch_of_one_and_uint8_input() -> None:
    model = build("cspdarknet_n", "pan").eval()
    with torch.no_grad():
        detections = model.postprocess(model(torch.randint(0, 255, (1, 3, 96, 160), dtype=torch.uint8)), [(96, 160)])
    assert len(detections) == 1


def test_input_size_must_be_a_multiple_of_the_stride() -> None:
    model = build("cspdarknet_n", "pan")
    with pytest.raises(ValueError, match="not a multiple of 32"):
        model(torch.rand(1, 3, 97, 131))
