"""Long runs on real data: data=coco's periodic validation on a subset, best.ckpt by AP, early
stopping, and the W&B / MLflow loggers (offline)."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.conftest import REPO, compose_config, tiny_data


def _command(shapes: Path, out: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        str(REPO / "tools" / "train.py"),
        *tiny_data(shapes),
        "num_visualizations=0",
        "measure_cost=false",
        "trainer.enable_progress_bar=false",
        f"hydra.run.dir={out}",
        *extra,
    ]


def test_coco_defaults_suit_a_long_run() -> None:
    cfg = compose_config(["data=coco"])
    assert cfg.trainer.check_val_every_n_epoch == 5 and cfg.data.val_subset == 1000
    assert (
        cfg.callbacks.best_checkpoint.monitor == "val/bbox_AP" and cfg.callbacks.best_checkpoint.mode == "max"
    )
    assert (
        cfg.callbacks.early_stopping.monitor == "val/bbox_AP" and cfg.callbacks.early_stopping.patience == 4
    )
    assert cfg.data.cache_images == "auto"
    # The command line still wins, and the embedded set keeps its short-run defaults.
    assert (
        compose_config(["data=coco", "trainer.check_val_every_n_epoch=2"]).trainer.check_val_every_n_epoch
        == 2
    )
    shapes = compose_config([])
    assert shapes.trainer.check_val_every_n_epoch == 100 and "early_stopping" not in shapes.callbacks


@pytest.mark.slow
def test_periodic_validation_keeps_the_best_checkpoint(tiny_shapes: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    command = _command(
        tiny_shapes,
        out,
        "trainer.max_epochs=4",
        "trainer.check_val_every_n_epoch=1",
        "data.val_subset=5",
        "callbacks.early_stopping.patience=2",
        "callbacks.early_stopping.min_delta=0.5",  # no AP gain is that large: stops after 1 + 2 checks
    )
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    best = torch.load(out / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=False)
    last = torch.load(out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    callback = next(
        v for k, v in best["callbacks"].items() if k.startswith("ModelCheckpoint{'monitor': 'val/bbox_AP'")
    )
    assert callback["best_model_path"].endswith("best.ckpt")
    # Early stopping after the third validation (the first sets the score, two more without a
    # 0.5 AP gain): 3 of the 4 epochs trained.
    stopper = next(v for k, v in last["callbacks"].items() if k.startswith("EarlyStopping"))
    assert last["epoch"] == 3 and stopper["stopped_epoch"] == 2 and stopper["wait_count"] == 2
    with (out / "csv" / "version_0" / "metrics.csv").open() as file:
        rows = [row for row in csv.DictReader(file) if row.get("val/bbox_AP")]
    # Three validations during training (5 of 8 images), then the final one on all 8.
    assert len(rows) == 4
    logged = max(float(row["val/bbox_AP"]) for row in rows[:3])
    assert float(callback["best_model_score"]) == pytest.approx(logged)
    assert "validation during training: 5 of 8 images" in result.stdout + result.stderr
    final = json.loads((out / "metrics.json").read_text())["bbox/AP"]
    assert float(rows[-1]["val/bbox_AP"]) == pytest.approx(final)


@pytest.mark.slow
def test_wandb_and_mlflow_loggers_offline(tiny_shapes: Path, tmp_path: Path) -> None:
    pytest.importorskip("wandb")
    pytest.importorskip("mlflow")
    wandb_out = tmp_path / "wandb_run"
    result = subprocess.run(
        _command(tiny_shapes, wandb_out, "trainer.max_epochs=1", "logger=wandb", "logger.wandb.offline=true"),
        capture_output=True,
        text=True,
        env={**__import__("os").environ, "WANDB_SILENT": "true"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    runs = list((wandb_out / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(runs) == 1 and runs[0].stat().st_size > 1000
    assert (wandb_out / "csv" / "version_0" / "metrics.csv").is_file()

    mlflow_out = tmp_path / "mlflow_run"
    store = f"sqlite:///{tmp_path}/mlflow.db"
    result = subprocess.run(
        _command(
            tiny_shapes,
            mlflow_out,
            "trainer.max_epochs=1",
            "logger=mlflow",
            f"logger.mlflow.tracking_uri={store}",
        ),
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=store)
    experiment = client.get_experiment_by_name("detect")
    (run,) = client.search_runs([experiment.experiment_id])
    final = json.loads((mlflow_out / "metrics.json").read_text())["bbox/AP"]
    assert run.data.metrics["bbox/AP"] == pytest.approx(final)
    assert (
        run.data.metrics["val/bbox_AP"] == pytest.approx(final) and "train/epoch_seconds" in run.data.metrics
    )
    assert float(run.data.params["config/optim/lr"]) == 0.006  # the whole config, as parameters
