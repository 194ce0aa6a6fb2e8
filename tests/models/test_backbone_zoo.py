"""The backbone catalogue: any timm model by name, freezing, learning-rate groups, weights loading."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torchvision
from hydra.utils import instantiate
from safetensors.torch import save_file
from torch import nn
from torchvision.ops import FrozenBatchNorm2d

from detect.models import CSPDarknet, TimmBackbone, TorchvisionBackbone, ViT
from detect.models.backbones import hub
from detect.models.backbones._weights import WeightsUnavailableError
from detect.tasks.optim import parameter_groups
from tests.conftest import compose_config
from tests.models.test_detector import make_targets

# CNNs, ConvNeXt, EfficientNet, MobileNet, RegNet, Swin, ViT, DeiT, hybrids, and other families,
# none with a config file of its own.
TIMM_NAMES = [
    "resnet18",
    "resnet26d",
    "seresnext26d_32x4d",
    "convnext_atto",
    "convnextv2_atto",
    "efficientnet_b0",
    "efficientnet_lite0",
    "tf_efficientnetv2_b0",
    "mobilenetv3_small_050",
    "mobilenetv3_large_100",
    "mobilenetv4_conv_small",
    "regnetx_002",
    "regnety_002",
    "swin_tiny_patch4_window7_224",
    "vit_tiny_patch16_224",
    "deit_tiny_patch16_224",
    "vit_tiny_r_s16_p8_224",
    "mobilevit_xxs",
    "edgenext_xx_small",
    "ghostnet_100",
    "dla34",
    "pvt_v2_b0",
    "tiny_vit_5m_224",
    "lcnet_050",
    "hrnet_w18_small",
]


def test_timm_matrix_is_broad() -> None:
    assert len(TIMM_NAMES) >= 20


@pytest.mark.parametrize("name", TIMM_NAMES)
def test_any_timm_model_composes_trains_and_predicts(name: str) -> None:
    cfg = compose_config(["backbone=timm", f"backbone.name={name}", "backbone.pyramid_channels=32"])
    model = instantiate(cfg.model)(num_classes=3)
    assert [spec.stride for spec in model.backbone.out_specs.values()] == [8, 16, 32]
    images = torch.rand(2, 3, 128, 128)
    targets = [make_targets([[10.0, 12.0, 60.0, 90.0]], [1]), make_targets([], [])]
    losses = model.loss(model(images), targets)
    assert all(torch.isfinite(value) for value in losses.values())
    sum(losses.values()).backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.backbone.parameters())
    model.eval()
    with torch.no_grad():
        detections = model.postprocess(model(images), [(128, 128)] * 2)
    assert len(detections) == 2


def test_swin_channels_last_output_is_turned_to_nchw() -> None:
    backbone = TimmBackbone("swin_tiny_patch4_window7_224")
    assert backbone.nhwc
    features = backbone(torch.rand(1, 3, 128, 128))
    assert features["p3"].shape == (1, 192, 16, 16)


def test_flat_hybrid_at_stride_32_gets_a_pyramid() -> None:
    backbone = TimmBackbone("vit_tiny_r_s16_p8_224", pyramid_channels=16)
    features = backbone(torch.rand(1, 3, 128, 128))
    assert {key: tuple(value.shape) for key, value in features.items()} == {
        "p3": (1, 16, 16, 16),
        "p4": (1, 16, 8, 8),
        "p5": (1, 16, 4, 4),
    }


# --- freezing -----------------------------------------------------------------------------------


def _frozen_names(backbone: nn.Module) -> set[str]:
    return {name for name, param in backbone.named_parameters() if not param.requires_grad}


@pytest.mark.parametrize(
    ("make", "stem", "first_stage", "second_stage"),
    [
        (
            lambda at: TorchvisionBackbone("resnet18", freeze_at=at),
            "body.conv1",
            "body.layer1",
            "body.layer2",
        ),
        (lambda at: CSPDarknet(freeze_at=at), "stem", "stages.0", "stages.1"),
        (
            lambda at: ViT(embed_dim=48, depth=3, num_heads=3, pyramid_channels=16, freeze_at=at),
            "trunk.patch_embed",
            "trunk.blocks.0",
            "trunk.blocks.1",
        ),
        (
            lambda at: TimmBackbone("convnext_atto", freeze_at=at),
            "body.stem_0",
            "body.stages_0",
            "body.stages_1",
        ),
    ],
    ids=["torchvision-resnet", "cspdarknet", "vit", "timm-convnext"],
)
def test_freeze_at_freezes_stem_and_first_stages(
    make, stem: str, first_stage: str, second_stage: str
) -> None:
    assert not _frozen_names(make(None))
    stem_only, one_stage = make(0), make(1)

    def under(names: set[str], prefix: str) -> bool:
        return any(name.startswith(prefix + ".") for name in names)

    frozen = _frozen_names(stem_only)
    assert under(frozen, stem) and not under(frozen, first_stage)
    frozen = _frozen_names(one_stage)
    assert under(frozen, stem) and under(frozen, first_stage) and not under(frozen, second_stage)
    trainable = {name for name, p in one_stage.named_parameters() if p.requires_grad}
    assert under(trainable, second_stage)


def test_freezing_also_freezes_batchnorm_statistics() -> None:
    backbone = TorchvisionBackbone("resnet18", freeze_at=1)
    assert isinstance(backbone.body.bn1, FrozenBatchNorm2d)
    assert isinstance(backbone.body.layer1[0].bn1, FrozenBatchNorm2d)
    assert isinstance(backbone.body.layer2[0].bn1, nn.BatchNorm2d)
    before = backbone.body.layer1[0].bn1.running_mean.clone()
    backbone.train()(torch.rand(2, 3, 64, 64) * 5)
    assert torch.equal(backbone.body.layer1[0].bn1.running_mean, before)


def test_freezing_timm_norm_act_layers_keeps_their_activation() -> None:
    torch.manual_seed(0)
    plain = TimmBackbone("efficientnet_b0").eval()
    frozen = TimmBackbone("efficientnet_b0", freeze_at=2).eval()
    frozen.load_state_dict(plain.state_dict(), strict=False)
    images = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        for key, value in plain(images).items():
            torch.testing.assert_close(frozen(images)[key], value)


def test_freeze_at_out_of_range_names_the_range() -> None:
    with pytest.raises(ValueError, match=r"freeze_at=9 .* 0 \(stem\) to 4"):
        TorchvisionBackbone("resnet18", freeze_at=9)


def test_frozen_parameters_get_no_gradient_through_the_detector() -> None:
    cfg = compose_config(["backbone=resnet18", "backbone.freeze_at=2", "neck=fpn"])
    model = instantiate(cfg.model)(num_classes=2)
    losses = model.loss(model(torch.rand(1, 3, 64, 64)), [make_targets([[5.0, 5.0, 40.0, 40.0]], [0], 64)])
    sum(losses.values()).backward()
    assert model.backbone.body.layer2[0].conv1.weight.grad is None
    assert model.backbone.body.layer3[0].conv1.weight.grad is not None


# --- learning-rate groups -------------------------------------------------------------------------


def _lr_of(groups: list[dict], param: nn.Parameter) -> float:
    return next(group["lr"] for group in groups if any(p is param for p in group["params"]))


@pytest.mark.parametrize("backbone", ["resnet18", "cspdarknet_n", "vit_t"])
def test_backbone_lr_mult(backbone: str) -> None:
    model = instantiate(compose_config([f"backbone={backbone}"]).model)(num_classes=2)
    groups = parameter_groups(model, weight_decay=0.05, lr=0.01, backbone_lr_mult=0.1)
    stage_of = model.backbone.stage_of()
    for name, param in model.named_parameters():
        inner = name.removeprefix("backbone.")
        expected = 0.001 if name.startswith("backbone.") and inner in stage_of else 0.01
        assert math.isclose(_lr_of(groups, param), expected), name
    # Every trainable parameter is in exactly one group.
    assert sum(len(group["params"]) for group in groups) == len(list(model.parameters()))
    for group in groups:
        if group["weight_decay"] > 0:  # norms and biases are never decayed
            assert all(p.ndim > 1 for p in group["params"])


def test_layer_decay_on_a_vit() -> None:
    model = instantiate(compose_config(["backbone=vit_t"]).model)(num_classes=2)
    groups = parameter_groups(model, weight_decay=0.05, lr=1.0, backbone_lr_mult=0.5, layer_decay=0.75)
    trunk = model.backbone.trunk
    stages = len(model.backbone.stage_prefixes())
    assert stages == 13  # patch embedding + 12 blocks
    assert math.isclose(_lr_of(groups, trunk.blocks[11].attn.qkv.weight), 0.5 * 0.75)
    assert math.isclose(_lr_of(groups, trunk.blocks[0].attn.qkv.weight), 0.5 * 0.75**12)
    assert math.isclose(_lr_of(groups, trunk.pos_embed), 0.5 * 0.75**13)
    assert math.isclose(_lr_of(groups, trunk.patch_embed.proj.weight), 0.5 * 0.75**13)
    # The simple pyramid, neck and head are new layers: full rate.
    assert math.isclose(_lr_of(groups, next(model.backbone.pyramid.parameters())), 1.0)
    assert math.isclose(_lr_of(groups, next(model.neck.parameters())), 1.0)


def test_layer_decay_on_a_timm_vit_follows_timms_grouping() -> None:
    cfg = compose_config(["backbone=timm", "backbone.name=vit_tiny_patch16_224"])
    model = instantiate(cfg.model)(num_classes=2)
    stages = model.backbone.stage_prefixes()
    assert len(stages) == 13  # embeddings + 12 blocks
    groups = parameter_groups(model, weight_decay=0.05, lr=1.0, layer_decay=0.5)
    vit = model.backbone.body.model
    assert math.isclose(_lr_of(groups, vit.blocks[11].mlp.fc1.weight), 0.5)
    assert math.isclose(_lr_of(groups, vit.blocks[0].mlp.fc1.weight), 0.5**12)
    assert math.isclose(_lr_of(groups, vit.pos_embed), 0.5**13)


def test_frozen_parameters_are_left_out_of_the_optimizer() -> None:
    model = instantiate(compose_config(["backbone=resnet18", "backbone.freeze_at=1"]).model)(num_classes=2)
    grouped = {id(p) for group in parameter_groups(model, 0.05, 0.01) for p in group["params"]}
    assert id(model.backbone.body.conv1.weight) not in grouped
    assert id(model.backbone.body.layer2[0].conv1.weight) in grouped


def test_training_config_reaches_the_optimizer(train_cfg) -> None:
    from detect.tasks.module import DetectionTask

    cfg = train_cfg(["backbone=resnet18", "optim.backbone_lr_mult=0.1", "optim.lr=0.002"])
    from omegaconf import OmegaConf

    task = DetectionTask(OmegaConf.to_container(cfg, resolve=True), [{"id": 1, "name": "a"}])
    task.trainer = type("T", (), {"estimated_stepping_batches": 10})()
    optimizer = task.configure_optimizers()["optimizer"]
    # initial_lr: the rate before the warm-up schedule scales it.
    assert sorted({round(group["initial_lr"], 6) for group in optimizer.param_groups}) == [0.0002, 0.002]


# --- weights --------------------------------------------------------------------------------------


def test_local_torchvision_weights_with_a_wrapper_prefix(tmp_path: Path) -> None:
    source = torchvision.models.resnet18()
    path = tmp_path / "resnet18.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in source.state_dict().items()}}, path)
    backbone = TorchvisionBackbone("resnet18", weights=str(path))
    report = backbone.load_report
    assert not report.mismatched and not report.unexpected
    assert not report.missing  # loaded into the whole model, classifier included, before the cut
    assert torch.equal(backbone.body.layer3[1].conv2.weight, source.layer3[1].conv2.weight)


def test_safetensors_weights_and_a_shape_mismatch_report(tmp_path: Path) -> None:
    source = torchvision.models.resnet18(num_classes=10).state_dict()
    source["layer1.0.conv1.weight"] = torch.zeros(1, 1, 1, 1)
    save_file(source, str(tmp_path / "w.safetensors"))
    backbone = TorchvisionBackbone("resnet18", weights=str(tmp_path / "w.safetensors"))
    report = backbone.load_report
    assert set(report.mismatched) == {"fc.weight", "fc.bias", "layer1.0.conv1.weight"}
    assert "shape mismatch 3" in report.summary()


def test_pickled_objects_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.pt"
    torch.save({"state_dict": {"a": torch.zeros(1)}, "object": Path("x")}, path)
    with pytest.raises(ValueError, match="weights_only"):
        TorchvisionBackbone("resnet18", weights=str(path))


def test_vit_position_embeddings_are_resampled(tmp_path: Path) -> None:
    from timm.models.vision_transformer import VisionTransformer

    source = VisionTransformer(img_size=384, patch_size=16, embed_dim=48, depth=2, num_heads=3, num_classes=0)
    save_file(source.state_dict(), str(tmp_path / "vit384.safetensors"))
    vit = ViT(
        embed_dim=48, depth=2, num_heads=3, pyramid_channels=16, weights=str(tmp_path / "vit384.safetensors")
    )
    assert not vit.load_report.mismatched
    assert "pos_embed" in vit.load_report.loaded
    assert vit.trunk.pos_embed.shape == (1, 1 + 14 * 14, 48)
    assert torch.equal(vit.trunk.blocks[1].mlp.fc1.weight, source.blocks[1].mlp.fc1.weight)


def test_timm_vit_weights_from_a_plain_timm_file(tmp_path: Path) -> None:
    import timm

    source = timm.create_model("vit_tiny_patch16_384", num_classes=0)
    save_file(source.state_dict(), str(tmp_path / "vit384.safetensors"))
    backbone = TimmBackbone("vit_tiny_patch16_224", weights=str(tmp_path / "vit384.safetensors"))
    assert not backbone.load_report.mismatched and not backbone.load_report.missing
    # features_only drops the final norm, which only the classifier used.
    assert set(backbone.load_report.unexpected) <= {"norm.weight", "norm.bias"}
    assert torch.equal(backbone.body.model.blocks[3].attn.qkv.weight, source.blocks[3].attn.qkv.weight)


@pytest.mark.parametrize(
    "make",
    [
        lambda: TorchvisionBackbone("resnet18", pretrained=True),
        lambda: TimmBackbone("resnet18", pretrained=True),
        lambda: ViT(embed_dim=192, depth=12, num_heads=3, pretrained=True, hub_name="deit_tiny_patch16_224"),
    ],
    ids=["torchvision", "timm", "vit"],
)
def test_pretrained_without_network_fails_at_once_with_the_way_out(monkeypatch, tmp_path: Path, make) -> None:
    monkeypatch.setattr(hub, "reachable", lambda *args, **kwargs: False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    with pytest.raises(WeightsUnavailableError, match="backbone.weights="):
        make()
