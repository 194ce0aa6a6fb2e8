"""Folding the input normalization into the first convolution keeps the outputs."""

import pytest
import torch
from hydra.utils import instantiate
from torch import nn

from detect.models.fold_input import PaddedPixels, fold_input_normalization
from detect.models.fuse import fuse_conv_bn
from tests.conftest import compose_config


def model_of(backbone: str) -> nn.Module:
    torch.manual_seed(0)
    model = instantiate(compose_config([f"backbone={backbone}"]).model)(num_classes=3)
    return model.eval()


@pytest.mark.parametrize(("backbone", "padding"), [("cspdarknet_n", (1, 1)), ("resnet18", (3, 3))])
def test_folded_model_predicts_the_same_from_uint8_and_float_images(
    backbone: str, padding: tuple[int, int]
) -> None:
    model = model_of(backbone)
    fuse_conv_bn(model)
    images = torch.randint(0, 256, (2, 3, 96, 128), dtype=torch.uint8)
    with torch.no_grad():
        before = model(images)
        assert fold_input_normalization(model)
        after = model(images)
        from_floats = model(images.float() / 255)
    assert isinstance(model.pixels, PaddedPixels) and model.pixels.padding == padding
    first = [m for m in model.backbone.modules() if isinstance(m, nn.Conv2d)][0]
    assert tuple(first.padding) == (0, 0)  # the mean-padded pixels stand for it
    for result in (after, from_floats):
        torch.testing.assert_close(result.cls_logits, before.cls_logits, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(result.box_logits, before.box_logits, atol=1e-4, rtol=1e-4)


def test_padded_pixels_come_in_the_autocast_dtype_with_the_mean_around() -> None:
    pixels = PaddedPixels((2, 1), torch.tensor([10.0, 20.0, 30.0]))
    images = torch.randint(0, 256, (1, 3, 4, 5), dtype=torch.uint8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = pixels(images)
    assert out.dtype == torch.bfloat16 and out.shape == (1, 3, 8, 7)
    assert torch.equal(out[:, :, 2:6, 1:6].float(), images.float())
    border = torch.ones(8, 7, dtype=torch.bool)
    border[2:6, 1:6] = False
    assert torch.equal(out[0, :, border].float(), torch.tensor([10.0, 20.0, 30.0])[:, None].expand(3, 36))


class ReadsTheImageTwice(nn.Module):
    """A stem whose image also feeds a shortcut: folding into the conv alone would be wrong."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) + x


def test_a_backbone_whose_image_is_read_elsewhere_is_left_as_it_is() -> None:
    model = model_of("cspdarknet_n")
    model.backbone.stem = nn.Sequential(ReadsTheImageTwice(), model.backbone.stem)
    images = torch.randint(0, 256, (1, 3, 64, 64), dtype=torch.uint8)
    with torch.no_grad():
        before = model(images)
        assert not fold_input_normalization(model)
        after = model(images)
    assert getattr(model, "pixels", None) is None
    assert tuple(model.backbone.stem[0].conv.padding) == (1, 1)
    torch.testing.assert_close(after.cls_logits, before.cls_logits)


def test_folding_a_training_model_is_refused() -> None:
    with pytest.raises(ValueError, match="eval"):
        fold_input_normalization(model_of("cspdarknet_n").train())
