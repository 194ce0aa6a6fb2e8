"""Evaluation entry: a model and a COCO json in, metrics and predictions out.

``ckpt_path=`` runs Lightning's validation loop, exactly as training validates; ``model=`` (a
checkpoint or any exported file) runs :func:`detect.load`'s predictor over the same letterboxed
images, so an exported model is scored by the code that ships with it.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from omegaconf import DictConfig
from torch.utils.data import DataLoader
from tqdm import tqdm

from detect.data.coco import CocoDetection
from detect.data.collate import collate
from detect.data.transforms import build_transforms
from detect.eval.coco import CocoEvaluator
from detect.eval.tables import format_metrics
from detect.inference import load, load_checkpoint
from detect.inference.checkpoint import inference_size

__all__ = ["evaluate"]

log = logging.getLogger(__name__)

_IOU_TYPES = {"detect": ("bbox",), "segment": ("bbox", "segm"), "pose": ("bbox", "keypoints")}


def evaluate(cfg: DictConfig) -> dict[str, float]:
    """Score ``cfg.model`` or ``cfg.ckpt_path`` on ``cfg.data.val_ann`` / ``val_images``.

    Returns:
        Flat metrics (``bbox/AP`` ...), also written to ``metrics.json`` beside ``predictions.json``.
    """
    if cfg.get("model"):
        metrics, results, iou_types = _evaluate_file(cfg)
    elif cfg.get("ckpt_path"):
        metrics, results, iou_types = _evaluate_checkpoint(cfg)
    else:
        raise ValueError(
            "give the model to evaluate: ckpt_path=path/to/last.ckpt or model=path/to/model.onnx"
        )
    from detect.tasks.train import write_outputs

    if (
        torch.distributed.is_available()
        and torch.distributed.is_initialized()
        and torch.distributed.get_rank()
    ):
        return metrics  # every process scored the gathered predictions; the first one writes them
    output_dir = Path(cfg.paths.output_dir)
    write_outputs(output_dir, metrics, results)
    for iou_type in iou_types:
        print("\n" + format_metrics(metrics, iou_type))
    print(f"\nmetrics:     {output_dir / 'metrics.json'}\npredictions: {output_dir / 'predictions.json'}")
    return metrics


def _evaluate_checkpoint(cfg: DictConfig) -> tuple[dict[str, float], list[dict], tuple[str, ...]]:
    import lightning as L

    from detect.data.datamodule import CocoDataModule
    from detect.tasks.checkpoint import load_task

    task = load_task(cfg.ckpt_path)
    trained = task.config.data
    data = cfg.data
    datamodule = CocoDataModule(
        val_ann=data.val_ann or trained.val_ann,
        val_images=data.val_images or trained.val_images,
        image_size=data.image_size or inference_size(trained),
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
        num_nodes=cfg.trainer.get("num_nodes", 1),
        strategy=cfg.trainer.get("strategy", "auto"),
        logger=False,
        enable_checkpointing=False,
    )
    trainer.validate(task, datamodule=datamodule, verbose=False)
    return task.val_metrics, task.val_results, task.iou_types


def _evaluate_file(cfg: DictConfig) -> tuple[dict[str, float], list[dict], tuple[str, ...]]:
    data = cfg.data
    val_ann, val_images = data.val_ann, data.val_images
    if str(cfg.model).endswith(".ckpt") and not (val_ann and val_images):
        trained = load_checkpoint(cfg.model).config["data"]
        val_ann, val_images = val_ann or trained["val_ann"], val_images or trained["val_images"]
    if not (val_ann and val_images):
        raise ValueError(
            f"{cfg.model} does not record its validation data: give data.val_ann= and data.val_images="
        )
    # Every detection the model keeps, as validation scores them: the threshold is the model's own.
    options = {"precision": cfg.get("precision", "fp32")} if str(cfg.model).endswith(".ckpt") else {}
    predictor = load(cfg.model, score_thresh=0.0, image_size=data.image_size, **options)
    size = predictor.image_size
    dataset = CocoDetection(
        val_ann,
        val_images,
        build_transforms(size),
        size,
        categories=predictor.categories,
        missing_images=data.missing_images,
    )
    iou_types = _IOU_TYPES[predictor.task]
    evaluator = CocoEvaluator(
        dataset.coco, predictor.categories.ids, iou_types, keypoints=predictor.categories.keypoints
    )
    loader = DataLoader(dataset, batch_size=data.batch_size, num_workers=data.num_workers, collate_fn=collate)
    for batch in tqdm(loader, desc=f"eval {Path(cfg.model).name}", unit="batch"):
        if batch is None:  # every image of it failed to decode (each was named)
            continue
        detections = predictor.infer(batch.images)
        evaluator.update(
            [meta.image_id for meta in batch.metas],
            [found.rescale(meta) for found, meta in zip(detections, batch.metas)],
        )
    return evaluator.compute(), evaluator.results, iou_types
