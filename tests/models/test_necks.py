"""Contract tests over every neck config, fed fake specs with tiny channels."""

import pytest
import torch
from hydra.utils import instantiate

from detect.models.necks import FPN, PAN
from detect.structures import FeatureSpec
from tests.conftest import compose_config, options

FAKE_SPECS = {"p3": FeatureSpec(8, 8), "p4": FeatureSpec(16, 16), "p5": FeatureSpec(32, 32)}


@pytest.mark.parametrize("name", options("neck"))
def test_neck_contract(name: str) -> None:
    neck = instantiate(compose_config([f"neck={name}"]).model.neck)(in_specs=FAKE_SPECS)
    features = {
        k: torch.rand(2, s.channels, 64 // s.stride, 96 // s.stride, requires_grad=True)
        for k, s in FAKE_SPECS.items()
    }
    out = neck(features)
    assert list(out) == list(neck.out_specs)
    for key, tensor in out.items():
        spec = neck.out_specs[key]
        assert tensor.shape == (2, spec.channels, 64 // spec.stride, 96 // spec.stride)
    sum(t.sum() for t in out.values()).backward()
    assert all(f.grad is not None and f.grad.abs().sum() > 0 for f in features.values())


@pytest.mark.parametrize("neck_class", [FPN, PAN])
def test_neck_rejects_gapped_strides(neck_class) -> None:
    specs = {"p3": FeatureSpec(8, 8), "p5": FeatureSpec(32, 32)}
    with pytest.raises(ValueError, match="log2-contiguous"):
        neck_class(specs, ["p3", "p5"])


@pytest.mark.parametrize("neck_class", [FPN, PAN])
def test_neck_rejects_missing_features(neck_class) -> None:
    with pytest.raises(ValueError, match="not produced by the backbone"):
        neck_class({"p3": FeatureSpec(8, 8)}, ["p3", "p4"])


def test_pan_caps_wide_levels() -> None:
    specs = {"p3": FeatureSpec(512, 8), "p4": FeatureSpec(1024, 16), "p5": FeatureSpec(2048, 32)}
    pan = PAN(specs, max_channels=64)
    assert [s.channels for s in pan.out_specs.values()] == [64, 64, 64]
