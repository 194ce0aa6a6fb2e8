"""Shared fixtures: config composition and a tiny shapes dataset written to a temporary folder."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, open_dict

from detect.data.datamodule import CocoDataModule
from detect.data.synthetic import ShapesConfig, generate_shapes

REPO = Path(__file__).resolve().parents[1]
CONF_DIR = REPO / "conf"
SHARED = REPO.parent / "shared" / "realdata"

torch.set_num_threads(2)


def options(group: str) -> list[str]:
    """Every option of a config group, read from the files in ``conf/<group>/``."""
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


def compose_config(overrides: list[str] | None = None, config_name: str = "train") -> DictConfig:
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name=config_name, overrides=overrides or [], return_hydra_config=False)


@pytest.fixture(scope="session")
def tiny_shapes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 24 + 8 image shapes set at 128 px."""
    root = tmp_path_factory.mktemp("shapes")
    return generate_shapes(root, ShapesConfig(num_train=24, num_val=8, image_size=128, seed=3))


def shapes_datamodule(shapes_root: Path, **options) -> CocoDataModule:
    """A data module over a generated shapes set's train and val splits (main process by default)."""
    return CocoDataModule(
        train_ann=f"{shapes_root}/annotations/instances_train.json",
        train_images=f"{shapes_root}/images/train",
        val_ann=f"{shapes_root}/annotations/instances_val.json",
        val_images=f"{shapes_root}/images/val",
        **{"num_workers": 0, **options},
    )


def tiny_data(shapes_root: Path) -> list[str]:
    """Overrides that train and validate on a generated shapes set at 128 px, in the main process."""
    return [
        "data=coco",
        f"data.train_ann={shapes_root}/annotations/instances_train.json",
        f"data.train_images={shapes_root}/images/train",
        f"data.val_ann={shapes_root}/annotations/instances_val.json",
        f"data.val_images={shapes_root}/images/val",
        "data.image_size=128",
        "data.batch_size=4",
        "data.num_workers=0",
        "data.cache_images=true",
    ]


def tiny_train_config(shapes_root: Path, output_dir: Path, extra: list[str] | None = None) -> DictConfig:
    """A training config on a generated shapes set at 128 px, writing to ``output_dir``."""
    cfg = compose_config(
        [
            *tiny_data(shapes_root),
            "logger={}",
            "num_visualizations=2",
            *(extra or []),
        ]
    )
    with open_dict(cfg):
        cfg.paths.output_dir = str(output_dir)
    return cfg


@pytest.fixture()
def train_cfg(tiny_shapes: Path, tmp_path: Path):
    """Compose a training config on the tiny set; call it with extra overrides."""
    return lambda extra=None: tiny_train_config(tiny_shapes, tmp_path / "run", extra)


@pytest.fixture(scope="session")
def shared_realdata() -> Path:
    if not SHARED.is_dir():
        pytest.skip("../shared/realdata is absent")
    return SHARED


from tests.checkpoints import make_checkpoint  # noqa: E402, F401  (a fixture, shared by inference/ and export/)
