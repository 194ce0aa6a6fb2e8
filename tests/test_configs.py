"""Every option of every config group composes, and the model groups instantiate together."""

import pytest
from hydra.utils import instantiate

from tests.conftest import compose_config, options


@pytest.mark.parametrize("group", ["data", "optim", "sched", "trainer", "logger", "callbacks"])
def test_every_option_composes(group: str) -> None:
    for option in options(group):
        cfg = compose_config([f"{group}={option}"])
        assert cfg[group]


def test_every_component_instantiates() -> None:
    cfg = compose_config(["trainer.accelerator=cpu"])
    for group in ("callbacks", "logger"):
        for name, node in cfg[group].items():
            if "save_dir" in node or "dirpath" in node:
                continue  # these need Hydra's run folder
            assert instantiate(node) is not None, name
    assert instantiate(cfg.model.neck).func.__name__ == "PAN"


def test_experiments_and_debug_settings_apply() -> None:
    overfit = compose_config(["experiment=overfit", "data=coco"])
    assert overfit.data.augment is None and overfit.trainer.max_epochs > 20
    assert overfit.model.backbone._target_.endswith("CSPDarknet")
    fast = compose_config(["debug=fast"])
    assert fast.trainer.fast_dev_run is True and fast.data.num_workers == 0


def test_defaults_point_at_the_default_model() -> None:
    cfg = compose_config()
    assert cfg.model.backbone._target_.endswith("CSPDarknet")
    assert cfg.model.neck._target_.endswith("PAN")
    assert cfg.model.head._target_.endswith("DetectHead")
    assert cfg.data._target_.endswith("ShapesDataModule")


@pytest.mark.parametrize(
    ("overrides", "mosaic"),
    [
        ([], 0.25),
        (["data=coco"], 0.25),
        (["head=pose"], 0.0),
        (["head=segment", "data=coco"], 0.25),
        (["head=pose", "data.augment.mosaic=0.5"], 0.5),
    ],
)
def test_mosaics_are_on_for_boxes_and_masks_and_off_for_keypoints(
    overrides: list[str], mosaic: float
) -> None:
    # Measured per head (docs/recipes.md); the command line still wins.
    assert compose_config(overrides).data.augment.mosaic == mosaic


@pytest.mark.parametrize(
    ("overrides", "scale"),
    [
        ([], 1.0),
        (["data=coco"], 1.0),
        (["head=pose"], 1.2),
        (["head=segment", "data=coco"], 1.2),
        (["head=pose", "experiment=overfit"], 1.0),
        (["head=segment", "data.val_scale=1.0"], 1.0),
    ],
)
def test_masks_and_keypoints_are_validated_and_shipped_enlarged(overrides: list[str], scale: float) -> None:
    # Measured per head (docs/recipes.md): the detector ships at its training size for speed.
    assert compose_config(overrides).data.val_scale == scale


def test_no_config_restates_channels_or_strides() -> None:
    for group in ("neck", "head"):
        for option in options(group):
            cfg = compose_config([f"{group}={option}"])
            node = cfg.model[group]
            assert "in_channels" not in node and "strides" not in node and "num_classes" not in node


@pytest.mark.parametrize("name", ["optim", "sched"])
def test_optimizer_and_schedule_instantiate(name: str) -> None:
    import torch
    from omegaconf import OmegaConf

    from detect.tasks.optim import build_optimizer

    cfg = compose_config()
    optimizer = build_optimizer(torch.nn.Linear(2, 2), OmegaConf.to_container(cfg.optim, resolve=True))
    assert optimizer.param_groups[0]["lr"] == cfg.optim.lr
    if name == "sched":
        scheduler = instantiate(cfg.sched)(optimizer, total_steps=1000)
        assert optimizer.param_groups[0]["lr"] == pytest.approx(cfg.optim.lr * cfg.sched.warmup_start)
        for _ in range(cfg.sched.warmup_steps):
            optimizer.step()
            scheduler.step()
        assert optimizer.param_groups[0]["lr"] == pytest.approx(cfg.optim.lr, rel=1e-3)


def test_unknown_option_lists_the_available_ones() -> None:
    from hydra.errors import MissingConfigException

    with pytest.raises(MissingConfigException) as info:
        compose_config(["backbone=resnet9000"])
    assert "cspdarknet_n" in str(info.value) and "vit_s" in str(info.value)


def test_command_line_contract_names() -> None:
    """`backbone=timm backbone.name=...` and `head.*` overrides reach the model."""
    cfg = compose_config(
        ["backbone=timm", "backbone.name=convnext_atto", "head=segment", "head.num_protos=8"]
    )
    assert cfg.model.backbone.name == "convnext_atto" and cfg.model.head.num_protos == 8
    model = instantiate(cfg.model)(num_classes=2)
    assert model.head.coef_branches[0][-1].out_channels == 8


def test_each_head_brings_its_learning_rate_and_the_command_line_still_wins() -> None:
    """Detect and pose train at AdamW 0.006 after 600 warm-up steps; segment and classify at the
    0.002 and 300 steps they were measured with."""
    for overrides in ([], ["data=coco"], ["head=pose"]):
        cfg = compose_config(overrides)
        assert cfg.optim.lr == 0.006 and cfg.sched.warmup_steps == 600
    for head in ("segment", "classify"):
        cfg = compose_config([f"head={head}"])
        assert cfg.optim.lr == 0.002 and cfg.optim._target_ == "torch.optim.AdamW"
        assert cfg.optim.weight_decay == compose_config().optim.weight_decay
        assert cfg.sched.warmup_steps == 300
    assert compose_config(["head=segment", "optim.lr=0.01"]).optim.lr == 0.01
    assert compose_config(["head=segment", "sched.warmup_steps=50"]).sched.warmup_steps == 50
    sgd = compose_config(["head=segment", "optim=sgd"]).optim
    assert sgd._target_ == "torch.optim.SGD" and sgd.lr == compose_config(["optim=sgd"]).optim.lr


def test_each_head_brings_its_epoch_count_and_the_command_line_still_wins() -> None:
    """Each head's measured schedule: detect 28 epochs (conf/trainer/), segment 18, pose 20 (conf/head/)."""
    assert compose_config().trainer.max_epochs == 28
    assert compose_config(["head=segment"]).trainer.max_epochs == 18
    assert compose_config(["head=pose"]).trainer.max_epochs == 20
    assert compose_config(["head=pose", "trainer.max_epochs=30"]).trainer.max_epochs == 30
    assert compose_config(["head=segment", "experiment=overfit"]).trainer.max_epochs > 20


@pytest.mark.parametrize("head", ["detect", "segment", "pose"])
def test_users_data_trains_with_the_recipes_augmentation(head: str) -> None:
    # Loaded through data=coco, four held-out shapes sets scored what data=shapes scores only
    # with the same augmentation (docs/recipes.md, "Every held-out style side by side"), so the two
    # must not drift apart.
    shapes = compose_config([f"head={head}"]).data.augment
    coco = compose_config([f"head={head}", "data=coco"]).data.augment
    assert coco == shapes
