"""oneDNN's fused conv + activation: the same outputs as the eager modules it replaces."""

from __future__ import annotations

import copy

import pytest
import torch
from hydra.utils import instantiate
from torch import nn

from detect.inference.onednn import OneDNNConv2d, onednn_available, use_onednn
from detect.models.fuse import fuse_conv_bn
from tests.conftest import compose_config

pytestmark = pytest.mark.skipif(not onednn_available(), reason="this PyTorch build has no oneDNN")


@pytest.mark.parametrize(
    "activation", [None, nn.SiLU(), nn.ReLU(), nn.Hardswish(), nn.GELU(), nn.GELU("tanh"), nn.Sigmoid()]
)
@pytest.mark.parametrize("stride, groups", [(1, 1), (2, 1), (1, 8)])
def test_fused_conv_matches_conv_then_activation(activation, stride: int, groups: int) -> None:
    conv = nn.Conv2d(16, 24, 3, stride=stride, padding=1, groups=groups)
    reference = nn.Sequential(conv, activation or nn.Identity()).eval()
    fused = OneDNNConv2d(conv, activation)
    for size in ((1, 16, 13, 17), (2, 16, 32, 32)):  # the weights are packed again for a new shape
        x = torch.randn(size)
        with torch.inference_mode():
            torch.testing.assert_close(fused(x), reference(x), atol=1e-5, rtol=1e-5)


def test_an_unsupported_conv_is_refused() -> None:
    with pytest.raises(ValueError, match="zero-padded"):
        OneDNNConv2d(nn.Conv2d(3, 4, 3, padding=1, padding_mode="reflect"))
    with pytest.raises(ValueError, match="activation"):
        OneDNNConv2d(nn.Conv2d(3, 4, 3), nn.Softplus())


def test_training_models_are_refused() -> None:
    with pytest.raises(ValueError, match="eval"):
        use_onednn(nn.Sequential(nn.Conv2d(3, 4, 3)).train())


@pytest.mark.parametrize("backbone", ["cspdarknet_n", "resnet18", "mobilenet_v3_small", "vit_t"])
def test_a_whole_detector_predicts_the_same(backbone: str) -> None:
    model = instantiate(compose_config([f"backbone={backbone}"]).model)(num_classes=3)
    model.train()
    with torch.no_grad():
        for _ in range(2):  # non-trivial BatchNorm statistics
            model(torch.rand(2, 3, 64, 64))
    model.eval()
    fuse_conv_bn(model)
    fast = copy.deepcopy(model)
    replaced = use_onednn(fast)
    assert replaced == sum(isinstance(m, OneDNNConv2d) for m in fast.modules()) > 0
    assert not any(type(m) is nn.Conv2d for m in fast.modules() if OneDNNConv2d.supports(m))
    images = torch.randint(0, 256, (1, 3, 96, 128), dtype=torch.uint8)
    with torch.inference_mode():
        before, after = model(images), fast(images)
    for name in ("cls_logits", "box_logits"):
        torch.testing.assert_close(getattr(after, name), getattr(before, name), atol=1e-4, rtol=1e-4)


@pytest.mark.skipif(not onednn_available(torch.bfloat16), reason="no oneDNN bf16 on this CPU")
def test_autocast_runs_the_fused_conv_in_bf16() -> None:
    conv = nn.Conv2d(8, 8, 3, padding=1)
    fused = OneDNNConv2d(conv, nn.SiLU())
    x = torch.randn(1, 8, 16, 16)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = fused(x)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), nn.functional.silu(conv(x)).detach(), atol=0.1, rtol=0.05)


def test_a_used_fused_conv_copies_and_pickles() -> None:
    import io
    import pickle

    fused = OneDNNConv2d(nn.Conv2d(4, 4, 3, padding=1), nn.SiLU())
    x = torch.randn(1, 4, 8, 8)
    with torch.inference_mode():
        expected = fused(x)  # packs the weights
        for other in (copy.deepcopy(fused), pickle.loads(pickle.dumps(fused))):
            torch.testing.assert_close(other(x), expected)
    buffer = io.BytesIO()
    torch.save(fused.state_dict(), buffer)
    assert set(torch.load(io.BytesIO(buffer.getvalue()), weights_only=True)) == {"weight", "bias"}
