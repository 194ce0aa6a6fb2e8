"""Evaluation entry: a checkpoint and a COCO json in, metrics and predictions out."""

from __future__ import annotations

import logging
from pathlib import Path

import lightning as L
from omegaconf import DictConfig

from detect.data.datamodule import CocoDataModule
from detect.eval.tables import format_metrics
from detect.tasks.checkpoint import load_task
from detect.tasks.train import write_outputs

__all__ = ["evaluate"]

log = logging.getLogger(__name__)


def evaluate(cfg: DictConfig) -> dict[str, float]:
    """Score ``cfg.ckpt_path`` on ``cfg.data.val_ann`` / ``val_images`` (default: its own validation set).

    Returns:
        Flat metrics (``bbox/AP`` ...), also written to ``metrics.json`` beside ``predictions.json``.
    """
    task = load_task(cfg.ckpt_path)
    trained = task.config.data
    data = cfg.data
    datamodule = CocoDataModule(
        val_ann=data.val_ann or trained.val_ann,
        val_images=data.val_images or trained.val_images,
        image_size=data.image_size or trained.image_size,
        val_batch_size=data.batch_size,
        num_workers=data.num_workers,
        missing_images=data.missing_images,
        categories=task.categories.to_list(),
    )
    task.model.check_input_size(datamodule.image_size, datamodule.image_size)
    fields = task.model.head.target_fields
    datamodule.request_targets(masks="masks" in fields, keypoints="keypoints" in fields)
    trainer = L.Trainer(
        accelerator=cfg.trainer.accelerator,
        devices=cfg.trainer.devices,
        logger=False,
        enable_checkpointing=False,
    )
    trainer.validate(task, datamodule=datamodule, verbose=False)
    output_dir = Path(cfg.paths.output_dir)
    write_outputs(output_dir, task.val_metrics, task.val_results)
    for iou_type in task.iou_types:
        print("\n" + format_metrics(task.val_metrics, iou_type))
    print(f"\nmetrics:     {output_dir / 'metrics.json'}\npredictions: {output_dir / 'predictions.json'}")
    return task.val_metrics
