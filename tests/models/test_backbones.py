"""Contract tests over every backbone config: declared specs match what forward returns."""

import pytest
import torch
from hydra.utils import instantiate

from detect.models import CSPDarknet, TimmBackbone, ViT
from tests.conftest import compose_config, options


@pytest.mark.parametrize("name", options("backbone"))
def test_backbone_contract(name: str) -> None:
    backbone = instantiate(compose_config([f"backbone={name}"]).model.backbone)
    specs = backbone.out_specs
    assert list(specs) == sorted(specs, key=lambda key: specs[key].stride), (
        "specs must be ordered fine to coarse"
    )
    images = torch.rand(2, 3, 128, 96)
    with torch.no_grad():
        features = backbone(images)
    assert list(features) == list(specs)
    for key, feature in features.items():
        assert key == f"p{specs[key].stride.bit_length() - 1}"
        assert feature.shape == (2, specs[key].channels, 128 // specs[key].stride, 96 // specs[key].stride)
    assert backbone.size_divisibility == max(spec.stride for spec in specs.values())


def test_cspdarknet_scales_match_yolov8() -> None:
    nano = CSPDarknet(0.33, 0.25)
    small = CSPDarknet(0.33, 0.50)
    assert [s.channels for s in nano.out_specs.values()] == [64, 128, 256]
    assert [s.channels for s in small.out_specs.values()] == [128, 256, 512]
    params = sum(p.numel() for p in nano.parameters())
    assert 1.0e6 < params < 1.6e6  # YOLOv8n's backbone has about 1.27 M parameters


def test_cspdarknet_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="out_features"):
        CSPDarknet(out_features=("p6",))
    with pytest.raises(ValueError, match="width_multiple"):
        CSPDarknet(width_multiple=0)


def test_vit_takes_any_multiple_of_32() -> None:
    vit = ViT(embed_dim=48, depth=2, num_heads=3, pyramid_channels=16)
    with torch.no_grad():
        features = vit(torch.rand(1, 3, 160, 224))
    assert {k: tuple(v.shape[-2:]) for k, v in features.items()} == {
        "p3": (20, 28),
        "p4": (10, 14),
        "p5": (5, 7),
    }


def test_vit_sizes_match_deit() -> None:
    tiny = ViT(embed_dim=192, depth=12, num_heads=3)
    trunk_params = sum(p.numel() for p in tiny.trunk.parameters())
    assert 5.0e6 < trunk_params < 6.0e6  # DeiT-Tiny: 5.7 M


def test_timm_adapter_picks_strides_8_16_32() -> None:
    backbone = TimmBackbone("resnet18d")
    assert {k: (s.channels, s.stride) for k, s in backbone.out_specs.items()} == {
        "p3": (128, 8),
        "p4": (256, 16),
        "p5": (512, 32),
    }


def test_timm_adapter_rejects_unknown_names() -> None:
    with pytest.raises(ValueError, match="unknown timm model"):
        TimmBackbone("not_a_model_xyz")
