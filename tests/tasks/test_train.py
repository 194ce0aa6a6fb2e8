"""Training, evaluation and prediction end to end on the tiny shapes set."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image

from detect.tasks import load_task, train
from detect.tasks.checkpoint import warm_start
from detect.tasks.module import DetectionTask
from tests.conftest import REPO, shapes_datamodule, tiny_train_config


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Path:
    """A checkpoint from a fast_dev_run, shared by the CLI tests."""
    make = request.getfixturevalue("train_cfg_module")
    cfg = make(["trainer.fast_dev_run=true"])
    train(cfg)
    return Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"


@pytest.fixture(scope="module")
def train_cfg_module(tiny_shapes: Path, tmp_path_factory: pytest.TempPathFactory):
    """Like ``train_cfg``, for module-scoped fixtures; every call gets its own run folder."""
    return lambda extra=None: tiny_train_config(tiny_shapes, tmp_path_factory.mktemp("run"), extra)


def test_fast_dev_run_writes_every_output(checkpoint: Path) -> None:
    run = checkpoint.parent.parent
    metrics = json.loads((run / "metrics.json").read_text())
    for key in ("bbox/AP", "bbox/AP50", "bbox/AP75", "bbox/APs", "bbox/APm", "bbox/APl"):
        # pycocotools reports -1 for a size range without ground truth in the scored images.
        assert metrics[key] == -1.0 or 0.0 <= metrics[key] <= 1.0
    predictions = json.loads((run / "predictions.json").read_text())
    assert isinstance(predictions, list)
    assert all({"image_id", "category_id", "bbox", "score"} <= set(p) for p in predictions)
    assert len(list((run / "visualizations").glob("*.jpg"))) == 2


def test_checkpoint_alone_rebuilds_the_model(checkpoint: Path) -> None:
    task = load_task(checkpoint)
    assert task.categories.names[0] == "circle" and len(task.categories) == 7
    with torch.no_grad():
        detections = task(torch.rand(1, 3, 128, 128))
    assert len(detections) == 1


def run_tool(tool: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO / "tools" / tool), *args],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=REPO,
    )


def test_eval_cli(checkpoint: Path, tiny_shapes: Path, tmp_path: Path) -> None:
    result = run_tool(
        "eval.py",
        f"ckpt_path={checkpoint}",
        f"data.val_ann={tiny_shapes}/annotations/instances_val.json",
        f"data.val_images={tiny_shapes}/images/val",
        "data.num_workers=0",
        f"hydra.run.dir={tmp_path}",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert 0.0 <= metrics["bbox/AP"] <= 1.0
    assert isinstance(json.loads((tmp_path / "predictions.json").read_text()), list)


def test_predict_cli_on_odd_images(checkpoint: Path, tmp_path: Path) -> None:
    source = tmp_path / "in"
    source.mkdir()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (131, 97, 3), dtype=np.uint8)).save(
        source / "odd.jpg"
    )
    Image.new("L", (50, 70), 128).save(source / "gray.png")
    Image.new("RGBA", (300, 120), (10, 20, 30, 128)).save(source / "alpha.png")
    (source / "broken.jpg").write_bytes(b"garbage")
    out = tmp_path / "out"
    result = run_tool(
        "predict.py",
        f"ckpt_path={checkpoint}",
        f"source={source}",
        "score_thresh=0.0",
        f"hydra.run.dir={out}",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    entries = json.loads((out / "predictions.json").read_text())
    assert sorted(Path(e["file"]).name for e in entries) == ["alpha.png", "gray.png", "odd.jpg"]
    for entry in entries:
        assert (
            len(entry["boxes"])
            == len(entry["scores"])
            == len(entry["category_ids"])
            == len(entry["category_names"])
        )
        for x0, y0, x1, y1 in entry["boxes"]:
            assert 0 <= x0 <= x1 <= entry["width"] and 0 <= y0 <= y1 <= entry["height"]
    assert sorted(p.name for p in (out / "images").iterdir()) == ["alpha.jpg", "gray.jpg", "odd.jpg"]


def test_first_errors_are_one_line(tmp_path: Path) -> None:
    result = run_tool("train.py", "backbone=resnet9000", f"hydra.run.dir={tmp_path}")
    assert result.returncode != 0 and "cspdarknet_n" in result.stderr and "Traceback" not in result.stderr
    result = run_tool(
        "train.py",
        "data=coco",
        f"data.train_ann={tmp_path}/missing.json",
        f"data.train_images={tmp_path}",
        f"data.val_ann={tmp_path}/missing.json",
        f"data.val_images={tmp_path}",
        f"hydra.run.dir={tmp_path}",
    )
    assert (
        result.returncode == 1
        and "annotation file not found" in result.stderr
        and "missing.json" in result.stderr
    )
    assert "Traceback" not in result.stderr


PERSON = [{"id": 1, "name": "person", "keypoints": ["a", "b"], "skeleton": [[1, 2]]}]


def test_warm_start_from_a_detect_checkpoint_into_a_pose_model(checkpoint: Path, train_cfg_module) -> None:
    """Backbone and neck come from the checkpoint; what does not fit stays fresh and is reported."""
    cfg = train_cfg_module(["head=pose"])
    task = DetectionTask(OmegaConf.to_container(cfg, resolve=True), PERSON)
    report = warm_start(task.model, checkpoint)
    assert any("keypoint_branches" in key for key in report.missing)
    # One class instead of seven: the last class conv does not fit.
    assert any(key.startswith("head.cls_branches") for key in report.mismatched)
    source = load_task(checkpoint).model.state_dict()
    own = task.model.state_dict()
    kept = [key for key in own if key.startswith(("backbone.", "neck."))]
    assert kept and all(torch.equal(own[key], source[key]) for key in kept)
    assert set(report.loaded) >= set(kept)


def test_training_starts_from_init_from_and_prints_the_report(
    checkpoint: Path, train_cfg_module, capsys
) -> None:
    cfg = train_cfg_module(["head=pose", f"init_from={checkpoint}", "trainer.fast_dev_run=true"])
    train(cfg)
    assert "init_from" in capsys.readouterr().out


def test_warm_start_refuses_an_unrelated_file(tmp_path: Path, train_cfg_module) -> None:
    torch.save({"something.else": torch.zeros(3)}, tmp_path / "other.pt")
    task = DetectionTask(OmegaConf.to_container(train_cfg_module(), resolve=True), [{"id": 1, "name": "a"}])
    with pytest.raises(ValueError, match="nothing in"):
        warm_start(task.model, tmp_path / "other.pt")


def test_wrong_input_size_says_which_multiple(train_cfg_module) -> None:
    cfg = train_cfg_module(["data.image_size=100", "trainer.fast_dev_run=true"])
    with pytest.raises(ValueError, match="multiple of 32"):
        train(cfg)


def test_val_scale_sets_where_validation_and_the_shipped_model_run(
    train_cfg_module, tiny_shapes: Path
) -> None:
    """Trained at 128 px with val_scale 1.25: validated and shipped at 160. The val set letterboxes
    to 160, the training set stays at 128, and the checkpoint's predictor (what predict, export,
    eval and serve load) runs at 160."""
    from detect import load

    datamodule = shapes_datamodule(tiny_shapes, image_size=128, val_scale=1.25)
    datamodule.setup("fit")
    assert datamodule.train_set[0].image.shape[-2:] == (128, 128)
    assert datamodule.val_set[0].image.shape[-2:] == (160, 160)

    cfg = train_cfg_module(["trainer.fast_dev_run=true", "data.val_scale=1.25"])
    train(cfg)
    predictor = load(Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt")
    assert predictor.image_size == 160
    results = predictor.predict(np.zeros((100, 120, 3), np.uint8))
    assert results[0].boxes.shape[-1] == 4


@pytest.mark.parametrize(("scale", "size"), [(1.0, 320), (1.2, 384), (1.1, 352), (0.5, 160), (1.01, 320)])
def test_val_image_size_rounds_to_a_multiple_of_32(scale: float, size: int) -> None:
    from detect.data.transforms import val_image_size

    assert val_image_size(320, scale) == size


def test_a_bad_val_scale_is_named() -> None:
    from detect.data.datamodule import CocoDataModule

    with pytest.raises(ValueError, match=r"data.val_scale must be a number from 0.25 to 4, got 0"):
        CocoDataModule(image_size=320, val_scale=0)


@pytest.mark.slow
def test_short_training_learns(train_cfg_module) -> None:
    """A few hundred steps on the tiny set must clearly beat an untrained model."""
    cfg = train_cfg_module(
        [
            "trainer.max_epochs=40",
            "data.val_ann=${data.train_ann}",
            "data.val_images=${data.train_images}",
            "data.augment=null",
            "sched.warmup_steps=20",
        ]
    )
    metrics = train(cfg)
    assert metrics["bbox/AP50"] > 0.3, metrics
