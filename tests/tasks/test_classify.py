"""head=classify: backbones pre-trained on class labels (crops or folders), then detectors started from them."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from omegaconf import open_dict
from PIL import Image

import detect
from detect.data.classification import coco_crops, folder_samples
from detect.inference.checkpoint import CheckpointError
from detect.models.backbones._weights import read_state_dict
from detect.tasks import train
from detect.tasks.checkpoint import warm_start
from tests.conftest import compose_config


def _config(output: Path, overrides: list[str]):  # type: ignore[no-untyped-def]
    cfg = compose_config(
        [
            "head=classify",
            "logger={}",
            "data.image_size=64",
            "data.batch_size=16",
            "data.num_workers=0",
            *overrides,
        ]
    )
    with open_dict(cfg):
        cfg.paths.output_dir = str(output)
    return cfg


def _crops(shapes: Path) -> list[str]:
    return [
        "data=crops",
        f"data.train_ann={shapes}/annotations/instances_train.json",
        f"data.train_images={shapes}/images/train",
        f"data.val_ann={shapes}/annotations/instances_val.json",
        f"data.val_images={shapes}/images/val",
    ]


def test_crops_are_the_objects_of_the_json(tiny_shapes: Path) -> None:
    ann = tiny_shapes / "annotations" / "instances_train.json"
    coco = json.loads(ann.read_text())
    samples, categories = coco_crops(ann, tiny_shapes / "images" / "train", min_size=8, context=0.0)
    big = [a for a in coco["annotations"] if max(a["bbox"][2:]) >= 8]
    assert len(samples) == len(big) and [c["name"] for c in categories][0] == "circle"
    first = samples[0]
    x, y, w, h = big[0]["bbox"]
    assert first.box == pytest.approx((x, y, x + w, y + h))
    assert categories[first.label]["id"] == big[0]["category_id"]


def test_a_detector_starts_from_a_classifiers_backbone(tiny_shapes: Path, tmp_path: Path) -> None:
    cfg = _config(tmp_path / "cls", [*_crops(tiny_shapes), "trainer.max_epochs=1"])
    metrics = train(cfg)
    assert 0 <= metrics["cls/top1"] <= metrics["cls/top5"] <= 1
    assert {f"cls/acc/{name}" for name in ("circle", "person")} <= set(metrics)
    saved = json.loads((tmp_path / "cls" / "metrics.json").read_text())
    assert saved["cls/top1"] == pytest.approx(metrics["cls/top1"])
    checkpoint = tmp_path / "cls" / "checkpoints" / "last.ckpt"
    # A detector starts from it: every backbone tensor loads, no head tensor does.
    detector = instantiate(compose_config(["head=detect"]).model)(num_classes=3)
    report = warm_start(detector, checkpoint)
    assert set(report.loaded) == {f"backbone.{k}" for k in detector.backbone.state_dict()}
    weights = {k.removeprefix("model."): v for k, v in read_state_dict(checkpoint).items()}
    for name, value in detector.backbone.state_dict().items():
        torch.testing.assert_close(value, weights[f"backbone.{name}"])
    # The classifier is no deployable detector: loading it says what to do instead.
    with pytest.raises(CheckpointError, match="is a classifier"):
        detect.load(checkpoint)


@pytest.mark.slow
def test_a_classifier_learns_the_crops_it_trains_on(tiny_shapes: Path, tmp_path: Path) -> None:
    """Without augmentation, ~170 steps fit the ~110 training crops (scored on the same crops)."""
    crops = _crops(tiny_shapes)[:3]
    same = ["data.val_ann=${data.train_ann}", "data.val_images=${data.train_images}"]
    cfg = _config(
        tmp_path / "cls",
        [
            *crops,
            *same,
            "data.augment=false",
            "trainer.max_epochs=25",
            "sched.warmup_steps=10",
            # fp32 on every machine: under bf16 autocast (the default on AMX CPUs) the same run
            # fitted only 65 % of the crops after 25 epochs and 73 % after 40 (not understood yet).
            "trainer.precision=32-true",
        ],
    )
    metrics = train(cfg)
    # Seven classes: chance is 0.14.
    assert metrics["cls/top1"] > 0.8, metrics


def test_a_class_folder_tree_trains_and_a_broken_image_is_named(
    tiny_shapes: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    samples, categories = coco_crops(
        tiny_shapes / "annotations" / "instances_train.json", tiny_shapes / "images" / "train"
    )
    tree = tmp_path / "tree"
    for index, sample in enumerate(samples[:40]):
        folder = tree / categories[sample.label]["name"]
        folder.mkdir(parents=True, exist_ok=True)
        image = Image.open(sample.path).convert("RGB").crop(tuple(int(v) for v in sample.box))
        image.save(folder / f"{index}.png")
    broken = tree / "circle" / "broken.jpg"
    broken.parent.mkdir(parents=True, exist_ok=True)
    broken.write_bytes(b"\xff\xd8\xff not a jpeg")
    found, classes = folder_samples(tree)
    assert len(found) == 41 and [c["name"] for c in classes] == sorted(c["name"] for c in classes)
    cfg = _config(
        tmp_path / "run",
        ["data=folder", f"data.train_root={tree}", f"data.val_root={tree}", "trainer.max_epochs=1"],
    )
    with caplog.at_level(logging.WARNING):
        metrics = train(cfg)
    assert 0 <= metrics["cls/top1"] <= 1
    assert any("broken.jpg" in record.getMessage() for record in caplog.records)


def test_wrong_pairings_fail_in_one_line(tiny_shapes: Path, tmp_path: Path) -> None:
    coco = [
        "data=coco",
        f"data.train_ann={tiny_shapes}/annotations/instances_train.json",
        f"data.train_images={tiny_shapes}/images/train",
        f"data.val_ann={tiny_shapes}/annotations/instances_val.json",
        f"data.val_images={tiny_shapes}/images/val",
    ]
    with pytest.raises(ValueError, match="head=classify trains on class labels"):
        train(_config(tmp_path / "a", coco))
    detector_on_crops = compose_config(["logger={}", *_crops(tiny_shapes)])
    with open_dict(detector_on_crops):
        detector_on_crops.paths.output_dir = str(tmp_path / "b")
    with pytest.raises(ValueError, match="train it with head=classify"):
        train(detector_on_crops)
    with pytest.raises(FileNotFoundError, match="not found"):
        folder_samples(tmp_path / "nowhere")
    (tmp_path / "empty" / "a").mkdir(parents=True)
    with pytest.raises(ValueError, match="no images"):
        folder_samples(tmp_path / "empty")
    np.testing.assert_equal(len(coco_crops(tiny_shapes / "annotations" / "instances_val.json", ".")[1]), 7)
