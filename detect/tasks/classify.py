"""Classification (``head=classify``): pre-train a backbone that a detector then starts from.

``python tools/train.py head=classify`` trains on object crops of the shapes set; ``data=folder``
or ``data=crops`` on the user's data. :func:`detect.tasks.train.train` runs it as it runs a
detector; the checkpoint's ``backbone.*`` tensors are what ``init_from=`` loads into a detector.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from detect.data.classification import ClassBatch, ClassificationDataModule
from detect.models.classifier import Classifier
from detect.tasks.optim import configure_optimization

__all__ = ["ClassificationTask", "classification_task", "format_accuracy", "is_classifier"]


def is_classifier(cfg: DictConfig) -> bool:
    """Whether the config trains a :class:`Classifier` (``head=classify``)."""
    return str(cfg.model.get("_target_", "")).endswith("Classifier")


class ClassificationTask(L.LightningModule):
    """Training and validation (top-1, top-5 and per-class accuracy) of a Classifier.

    Args:
        config: the resolved training config.
        categories: ``[{"id", "name"}]`` in label order.
    """

    def __init__(self, config: dict[str, Any], categories: list[dict[str, Any]]) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.config = OmegaConf.create(config)
        self.categories = categories
        self.model: Classifier = instantiate(self.config.model)(num_classes=len(categories))
        self.memory_format = (
            torch.channels_last if self.config.get("channels_last", True) else torch.contiguous_format
        )
        self.model.to(memory_format=self.memory_format)
        self.val_metrics: dict[str, float] = {}
        self._counts = torch.zeros(3, len(categories), dtype=torch.long)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(images.contiguous(memory_format=self.memory_format))

    def training_step(self, batch: ClassBatch | None, batch_idx: int) -> torch.Tensor | None:
        if batch is None:  # every image of the batch was unreadable (each was named)
            return None
        losses = self.model.loss(self(batch.images), batch.labels)
        loss = sum(losses.values())
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch))
        return loss

    def on_validation_epoch_start(self) -> None:
        # Per class: images, top-1 hits, top-5 hits.
        self._counts = torch.zeros(3, len(self.categories), dtype=torch.long, device=self.device)

    def validation_step(self, batch: ClassBatch | None, batch_idx: int) -> None:
        if batch is None:
            return
        logits = self(batch.images)
        top = logits.topk(min(5, logits.shape[1]), dim=1).indices
        labels = batch.labels
        ones = torch.ones_like(labels)
        self._counts[0].index_add_(0, labels, ones)
        self._counts[1].index_add_(0, labels, (top[:, 0] == labels).long())
        self._counts[2].index_add_(0, labels, (top == labels[:, None]).any(dim=1).long())

    def on_validation_epoch_end(self) -> None:
        counts = self.trainer.strategy.reduce(self._counts, reduce_op="sum").long()
        total = max(int(counts[0].sum()), 1)
        metrics = {"cls/top1": counts[1].sum().item() / total, "cls/top5": counts[2].sum().item() / total}
        for category, seen, hits in zip(self.categories, counts[0].tolist(), counts[1].tolist()):
            metrics[f"cls/acc/{category['name']}"] = hits / seen if seen else float("nan")
        self.val_metrics = metrics
        self.log_dict({"cls/top1": metrics["cls/top1"], "cls/top5": metrics["cls/top5"]}, sync_dist=True)
        self.log("val/top1", metrics["cls/top1"], prog_bar=True, sync_dist=True)

    def configure_optimizers(self) -> dict[str, Any]:
        return configure_optimization(self.model, self.config, int(self.trainer.estimated_stepping_batches))


def format_accuracy(metrics: dict[str, float]) -> str:
    """Top-1 and top-5, then the top-1 of each class, as printed at the end of a run."""
    lines = [f"top-1 {metrics['cls/top1']:.3f}   top-5 {metrics['cls/top5']:.3f}", "per class (top-1):"]
    for key, value in metrics.items():
        if key.startswith("cls/acc/"):
            lines.append(f"  {key.removeprefix('cls/acc/'):<20} {value:.3f}")
    return "\n".join(lines)


def classification_task(cfg: DictConfig, datamodule: Any, config: dict[str, Any]) -> ClassificationTask:
    """The task of a ``head=classify`` run, after checking that its data and metric fit it."""
    if not isinstance(datamodule, ClassificationDataModule):
        raise ValueError(
            "head=classify trains on class labels: use data=shapes_crops (the default with it), "
            "data=crops (objects cut from a COCO json) or data=folder (a class-per-folder tree)"
        )
    metric = cfg.get("optimized_metric")
    if metric is not None and not metric.startswith("cls/"):
        raise ValueError(f"optimized_metric={metric}: a classifier is scored on cls/top1 and cls/top5")
    return ClassificationTask(config=config, categories=datamodule.categories)
