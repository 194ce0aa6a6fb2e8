"""Conv+BN folding keeps the outputs."""

import pytest
import torch
from hydra.utils import instantiate

from detect.models.fuse import fuse_conv_bn
from tests.conftest import compose_config


def calibrated(backbone: str) -> torch.nn.Module:
    """A default-config model with non-trivial BatchNorm statistics, so that folding has something to fold."""
    model = instantiate(compose_config([f"backbone={backbone}"]).model)(num_classes=3)
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.rand(2, 3, 64, 64) * 3)
    return model.eval()


@pytest.mark.parametrize("backbone", ["cspdarknet_n", "mobilenet_v3_small"])
def test_fused_model_predicts_the_same(backbone: str) -> None:
    model = calibrated(backbone)
    images = torch.rand(1, 3, 96, 96)
    with torch.no_grad():
        before = model(images)
        assert fuse_conv_bn(model) > 10
        after = model(images)
    torch.testing.assert_close(after.cls_logits, before.cls_logits, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(after.box_logits, before.box_logits, atol=1e-4, rtol=1e-4)


def test_fusing_a_training_model_is_refused() -> None:
    with pytest.raises(ValueError, match="eval"):
        fuse_conv_bn(torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4)))


@pytest.mark.parametrize("backbone", ["resnet18", "timm", "efficientnet_b0"])
def test_every_norm_after_a_conv_is_folded_outside_sequentials_too(backbone: str) -> None:
    """torchvision's ResNet conv1/bn1 and timm's BatchNormAct2d are found by tracing, not by position."""
    from torch.nn.modules.batchnorm import _BatchNorm

    model = calibrated(backbone)
    images = torch.rand(1, 3, 96, 96)
    with torch.no_grad():
        before = model(images)
        fuse_conv_bn(model)
        after = model(images)
    assert not [m for m in model.modules() if isinstance(m, _BatchNorm)]
    torch.testing.assert_close(after.cls_logits, before.cls_logits, atol=1e-4, rtol=1e-4)
