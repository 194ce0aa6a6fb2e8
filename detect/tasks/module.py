"""The LightningModule that trains and validates a :class:`~detect.models.Detector`."""

from __future__ import annotations

import logging
import warnings
from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch import Tensor

from detect.data.coco import CategoryMap
from detect.eval.coco import CocoEvaluator
from detect.models.detector import Detector
from detect.structures import Batch, Detections
from detect.tasks.optim import configure_optimization

__all__ = ["DetectionTask"]

log = logging.getLogger(__name__)

# Under DDP the validation sampler repeats a few images to even out the processes; the evaluator
# keeps each image once (CocoEvaluator.update / merge), so Lightning's advice to validate on one
# device does not apply.
warnings.filterwarnings("ignore", message=r".*it is recommended to use `Trainer\(devices=1, num_nodes=1\)`.*")


class DetectionTask(L.LightningModule):
    """Training, validation and checkpointing around a Detector built from a resolved config.

    The resolved config and the class map are saved as hyperparameters, so a checkpoint alone
    rebuilds the model (``DetectionTask.load_from_checkpoint(path)``).

    Args:
        config: the resolved training config (``model``, ``optim``, ``sched`` sections are used).
        categories: ``[{"id": ..., "name": ...}]`` in contiguous-label order.
    """

    def __init__(self, config: dict[str, Any], categories: list[dict[str, Any]]) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.config = OmegaConf.create(config)
        self.categories = CategoryMap.from_list(categories)
        self.model: Detector = instantiate(self.config.model)(
            num_classes=len(self.categories), keypoints=self.categories.keypoints
        )
        # NHWC lets oneDNN (CPU, notably with AMX bf16) and cuDNN pick their fastest conv kernels.
        self.memory_format = (
            torch.channels_last if self.config.get("channels_last", True) else torch.contiguous_format
        )
        self.model.to(memory_format=self.memory_format)
        self.evaluator: CocoEvaluator | None = None
        self.val_metrics: dict[str, float] = {}
        self.val_results: list[dict] = []

    @property
    def skeleton(self) -> tuple[tuple[int, int], ...]:
        return self.categories.keypoints.skeleton if self.categories.keypoints else ()

    @property
    def keypoint_labels(self) -> list[int]:
        """Contiguous labels of the classes that have keypoints."""
        if self.categories.keypoints is None:
            return []
        return [self.categories.index(id_) for id_ in self.categories.keypoints.category_ids]

    @property
    def iou_types(self) -> tuple[str, ...]:
        """What validation scores: boxes always, masks and keypoints when the head predicts them."""
        fields = self.model.head.target_fields
        return (
            ("bbox",)
            + (("segm",) if "masks" in fields else ())
            + (("keypoints",) if "keypoints" in fields else ())
        )

    def forward(self, images: Tensor) -> list[Detections]:
        """Detections in the input frame for ``(B, 3, H, W)`` images."""
        outputs = self.model(images.contiguous(memory_format=self.memory_format))
        return self.model.postprocess(outputs, [tuple(images.shape[-2:])] * images.shape[0])

    def training_step(self, batch: Batch | None, batch_idx: int) -> Tensor | None:
        if batch is None:  # every image of the batch failed to decode (each was named)
            return None
        images = batch.images.contiguous(memory_format=self.memory_format)
        losses = self.model.loss(self.model(images), batch.targets)
        loss = sum(losses.values())
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch))
        self.log_dict({f"train/{k}": v for k, v in losses.items()}, batch_size=len(batch))
        return loss

    def on_validation_epoch_start(self) -> None:
        datamodule = self.trainer.datamodule
        self.evaluator = CocoEvaluator(
            datamodule.val_set.coco, self.categories.ids, self.iou_types, keypoints=self.categories.keypoints
        )

    def validation_step(self, batch: Batch | None, batch_idx: int) -> None:
        if batch is None:
            return
        detections = self(batch.images)
        self.evaluator.update(
            [meta.image_id for meta in batch.metas],
            [d.rescale(meta) for d, meta in zip(detections, batch.metas)],
        )

    def on_validation_epoch_end(self) -> None:
        if self.trainer.world_size > 1:
            gathered: list[Any] = [None] * self.trainer.world_size
            torch.distributed.all_gather_object(
                gathered, (self.evaluator.results, sorted(self.evaluator.seen))
            )
            self.evaluator.merge([results for results, _ in gathered])
            self.evaluator.seen = {image_id for _, seen in gathered for image_id in seen}
        self.val_metrics = self.evaluator.compute()
        self.val_results = self.evaluator.results
        summary = {key: value for key, value in self.val_metrics.items() if key.count("/") == 1}
        # Every process scored the same gathered predictions: the values agree, and sync_dist
        # averages equal numbers (it tells Lightning that they are already global).
        self.log_dict(summary, prog_bar=False, sync_dist=True)
        for iou_type in self.iou_types:
            self.log(f"val/{iou_type}_AP", summary[f"{iou_type}/AP"], prog_bar=True, sync_dist=True)

    def configure_optimizers(self) -> dict[str, Any]:
        return configure_optimization(self.model, self.config, int(self.trainer.estimated_stepping_batches))
