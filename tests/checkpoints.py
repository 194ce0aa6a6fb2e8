"""Checkpoints written the way training writes them, from a freshly built model (the make_checkpoint fixture)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from PIL import Image

from detect.data.coco import CategoryMap
from detect.data.transforms import build_transforms
from detect.export.matrix import spread_weights

IMAGE_SIZE = 128


def write_checkpoint(
    path: Path, head: str, shapes_root: Path, backbone: str = "cspdarknet_n", overrides: tuple[str, ...] = ()
) -> Path:
    """A checkpoint with a training checkpoint's layout; weights spread so scores are not all tied."""
    from tests.conftest import compose_config

    cfg = compose_config([f"backbone={backbone}", f"head={head}", *overrides])
    model_cfg = OmegaConf.to_container(cfg.model, resolve=True)
    ann = shapes_root / "annotations" / "instances_val.json"
    categories = CategoryMap.from_coco(json.loads(ann.read_text())["categories"])
    model = instantiate(cfg.model)(num_classes=len(categories), keypoints=categories.keypoints)
    torch.manual_seed(0)
    # Calibrated on the set's own images, so that its scores on them spread instead of saturating.
    files = sorted((shapes_root / "images" / "val").glob("*"))[:4]
    transform = build_transforms(IMAGE_SIZE)
    images = [np.asarray(Image.open(f).convert("RGB")) for f in files]
    letterboxed = [
        transform(image=i, bboxes=np.zeros((0, 4)), labels=[], instances=[], keypoints=np.zeros((0, 2)))[
            "image"
        ]
        for i in images
    ]
    spread_weights(model, torch.from_numpy(np.stack(letterboxed)).permute(0, 3, 1, 2).contiguous())
    config = {
        "model": model_cfg,
        "data": {
            "image_size": IMAGE_SIZE,
            "val_ann": str(ann),
            "val_images": str(shapes_root / "images" / "val"),
        },
        "choices": {"backbone": backbone, "neck": "pan", "head": head},
    }
    torch.save(
        {
            "state_dict": {f"model.{k}": v for k, v in model.state_dict().items()},
            "hyper_parameters": {"config": config, "categories": categories.to_list()},
            "detect": {"version": "0.1.0", "format": 1},
        },
        path,
    )
    return path


@pytest.fixture(scope="session")
def make_checkpoint(tmp_path_factory: pytest.TempPathFactory, tiny_shapes: Path) -> Callable[..., Path]:
    cache: dict[tuple[str, ...], Path] = {}

    def make(head: str = "detect", *overrides: str) -> Path:
        """``overrides``: config overrides on top of ``head=...`` (``head.reg_max=16``: the DFL)."""
        key = (head, *overrides)
        if key not in cache:
            folder = tmp_path_factory.mktemp(f"ckpt_{head}")
            cache[key] = write_checkpoint(folder / "last.ckpt", head, tiny_shapes, overrides=overrides)
        return cache[key]

    return make
