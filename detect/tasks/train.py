"""Training entry: config in, trained checkpoint, metrics and predictions out."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import ProgressBar
from omegaconf import DictConfig, OmegaConf
from PIL import Image

from detect.data.coco import read_image
from detect.eval.coco import results_to_detections
from detect.eval.tables import format_metrics
from detect.inference.visualize import draw_detections
from detect.tasks.callbacks import EpochTimer
from detect.tasks.checkpoint import warm_start
from detect.tasks.module import DetectionTask

__all__ = ["build_trainer", "train", "write_outputs"]

log = logging.getLogger(__name__)


def _precision(requested: str | int | None, accelerator: str | None) -> str | int:
    """``auto``: bf16 mixed precision on a GPU, and on a CPU with native bf16 units; fp32 elsewhere.

    On CPUs without AVX512-BF16 or AMX, bf16 is emulated and slower than fp32.
    """
    if requested not in (None, "auto"):
        return requested
    if torch.cuda.is_available() and accelerator in (None, "auto", "gpu", "cuda"):
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    if torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported():
        return "bf16-mixed"
    return "32-true"


def build_trainer(cfg: DictConfig, **overrides: Any) -> L.Trainer:
    """A Trainer from ``cfg.trainer`` with the configured callbacks and loggers."""
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c is not None]
    loggers = [instantiate(c) for c in (cfg.get("logger") or {}).values() if c is not None]
    trainer_cfg = OmegaConf.to_container(cfg.trainer, resolve=True)
    trainer_cfg["precision"] = _precision(trainer_cfg.get("precision"), trainer_cfg.get("accelerator"))
    trainer_cfg.update(overrides)
    if trainer_cfg.get("enable_progress_bar") is False:
        callbacks = [c for c in callbacks if not isinstance(c, ProgressBar)]
    return instantiate(trainer_cfg, callbacks=callbacks, logger=loggers or False)


def write_outputs(
    output_dir: Path, metrics: dict[str, float], results: list[dict], extra: dict[str, Any] | None = None
) -> None:
    """Write ``metrics.json`` (flat keys) and ``predictions.json`` (COCO results format)."""
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "metrics.json").write_text(json.dumps({**metrics, **(extra or {})}, indent=2))
    (output_dir / "predictions.json").write_text(json.dumps(results))


def _draw_samples(task: DetectionTask, datamodule: Any, output_dir: Path, count: int) -> Path:
    """Draw the saved predictions of the first ``count`` validation images."""
    folder = output_dir / "visualizations"
    folder.mkdir(parents=True, exist_ok=True)
    dataset = datamodule.val_set
    by_image: dict[int, list[dict]] = {}
    for result in task.val_results:
        by_image.setdefault(result["image_id"], []).append(result)
    for image_id in dataset.image_ids[:count]:
        info = dataset.coco.imgs[image_id]
        image = read_image(dataset.image_dir / info["file_name"])
        detections = results_to_detections(by_image.get(image_id, []), task.categories.ids, image.shape[:2])
        drawn = draw_detections(
            image,
            detections,
            task.categories.names,
            skeleton=task.skeleton,
            keypoint_labels=task.keypoint_labels,
        )
        Image.fromarray(np.ascontiguousarray(drawn)).save(
            folder / Path(info["file_name"]).with_suffix(".jpg").name
        )
    return folder


def train(cfg: DictConfig) -> dict[str, float]:
    """Train, evaluate with pycocotools and write checkpoint, metrics, predictions and drawings.

    Returns:
        The final validation metrics (flat keys such as ``bbox/AP``).
    """
    started = time.perf_counter()
    L.seed_everything(cfg.seed, workers=True)
    output_dir = Path(cfg.paths.output_dir)
    datamodule = instantiate(cfg.data)
    categories = datamodule.categories.to_list()
    config = OmegaConf.to_container(cfg, resolve=True)
    task = DetectionTask(config=config, categories=categories)
    task.model.check_input_size(cfg.data.image_size, cfg.data.image_size)
    if cfg.get("init_from"):
        report = warm_start(task.model, cfg.init_from)
        print(f"init_from {cfg.init_from}: {report.summary()}")
    fields = task.model.head.target_fields
    datamodule.request_targets(masks="masks" in fields, keypoints="keypoints" in fields)
    trainer = build_trainer(cfg)
    trainer.fit(task, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
    ckpt_path = output_dir / "checkpoints" / "last.ckpt"
    trainer.save_checkpoint(ckpt_path)
    train_seconds = time.perf_counter() - started
    # Every rank validates (their predictions are gathered); rank 0 writes the outputs.
    trainer.validate(task, datamodule=datamodule, verbose=False)
    metrics = dict(task.val_metrics)
    if trainer.is_global_zero:
        timers = [c for c in trainer.callbacks if isinstance(c, EpochTimer)]
        extra = {
            **(timers[0].summary() if timers else {}),
            "train_minutes": round(train_seconds / 60, 2),
            "params_M": round(sum(p.numel() for p in task.model.parameters()) / 1e6, 3),
        }
        write_outputs(output_dir, metrics, task.val_results, extra)
        drawings = _draw_samples(task, datamodule, output_dir, cfg.get("num_visualizations", 8))
        for iou_type in task.iou_types:
            print("\n" + format_metrics(metrics, iou_type))
        print(
            f"\ntrained in {train_seconds / 60:.1f} min\n"
            f"checkpoint:  {ckpt_path}\n"
            f"metrics:     {output_dir / 'metrics.json'}\n"
            f"predictions: {output_dir / 'predictions.json'}\n"
            f"drawings:    {drawings}"
        )
    return metrics
