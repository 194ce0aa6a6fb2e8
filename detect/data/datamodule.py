"""Lightning DataModules for COCO-format data and for the embedded shapes set."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.trainer.states import TrainerFn
from torch.utils.data import DataLoader, Dataset, Subset

from detect.data.coco import CategoryMap, CocoDetection
from detect.data.collate import collate
from detect.data.mosaic import Mosaic
from detect.data.resize import early_image_size, resize_batch
from detect.data.sampler import ResumableOrder
from detect.data.synthetic import ShapesConfig, ensure_shapes
from detect.data.transforms import AugmentConfig, build_transforms, val_image_size
from detect.structures import Batch

__all__ = ["CocoDataModule", "ShapesDataModule"]

log = logging.getLogger(__name__)


class CocoDataModule(ResumableOrder, L.LightningDataModule):
    """Train and validation loaders over COCO jsons and image folders.

    Args:
        train_ann, train_images: training json and image folder.
        val_ann, val_images: validation json and image folder.
        image_size: side of the square network input; images are letterboxed to it.
        val_scale: validation, and the model the run ships (the checkpoint's inference size),
            letterbox to ``image_size * val_scale``, rounded to a multiple of 32
            (:func:`val_image_size`): small objects are seen better enlarged, so a model trained
            at 320 can predict at 384 (1.2).
        batch_size: training batch size.
        val_batch_size: validation batch size.
        num_workers: loader worker processes.
        augment: training augmentation settings (``None`` for none).
        missing_images: ``"skip"`` or ``"error"`` for images listed but absent or unreadable.
        cache_images: decode images once and keep them in memory (true / false / ``auto``: when
            they fit in a quarter of the memory, at most 8 GiB; large sets are decoded by the workers).
        categories: class map to use instead of the training json's (set when evaluating a checkpoint).
        keypoint_sigma: OKS sigma of every keypoint, for datasets other than COCO persons (whose 17
            keypoints get COCO's published sigmas).
        strict: every image or annotation the data doctor would skip stops loading instead.
        val_subset: validation during training scores this many images, evenly spread over the
            split (the same ones each time); the final validation and ``tools/eval.py`` score all.
            ``None``: all, always.
    """

    def __init__(
        self,
        train_ann: str | None = None,
        train_images: str | None = None,
        val_ann: str | None = None,
        val_images: str | None = None,
        image_size: int = 640,
        val_scale: float = 1.0,
        batch_size: int = 8,
        val_batch_size: int = 16,
        num_workers: int = 2,
        augment: dict[str, Any] | None = None,
        missing_images: str = "skip",
        cache_images: bool | str = "auto",
        categories: list[dict] | None = None,
        keypoint_sigma: float = 0.07,
        strict: bool = False,
        val_subset: int | None = None,
    ) -> None:
        super().__init__()
        for name, value, least in (
            ("image_size", image_size, 32),
            ("batch_size", batch_size, 1),
            ("val_batch_size", val_batch_size, 1),
            ("num_workers", num_workers, 0),
        ):
            if not isinstance(value, int) or isinstance(value, bool) or value < least:
                raise ValueError(f"data.{name} must be an integer >= {least}, got {value!r}")
        self.train_ann, self.train_images = train_ann, train_images
        self.val_ann, self.val_images = val_ann, val_images
        self.image_size = image_size
        self.val_image_size = val_image_size(image_size, val_scale)
        # What training batches are downscaled to in this epoch (set_epoch; progressive resizing).
        self.train_image_size = image_size
        self.batch_size, self.val_batch_size = batch_size, val_batch_size
        self.num_workers = num_workers
        self.augment = AugmentConfig(**augment) if augment else None
        self.missing_images = missing_images
        self.cache_images = cache_images
        self.keypoint_sigma = keypoint_sigma
        self.strict = strict
        if val_subset is not None and (not isinstance(val_subset, int) or val_subset < 1):
            raise ValueError(f"data.val_subset must be a positive integer or null, got {val_subset!r}")
        self.val_subset = val_subset
        self._categories = CategoryMap.from_list(categories) if categories else None
        self.train_set: CocoDetection | None = None
        self.val_set: CocoDetection | None = None
        self._mosaic: Mosaic | None = None
        if self.augment is not None and self.augment.mosaic > 0:
            # Checked now: a bad value is a config error, not a failure in the first epoch.
            Mosaic([], self.augment.mosaic, image_size, self.augment.mosaic_scale)
        self.load_masks = False
        self.load_keypoints = False

    def request_targets(self, masks: bool = False, keypoints: bool = False) -> None:
        """Ask for instance masks and/or keypoints besides boxes (before ``setup``)."""
        self.load_masks = masks
        self.load_keypoints = keypoints

    @property
    def categories(self) -> CategoryMap:
        """The class map: the given one, else the training json's, else the validation json's."""
        if self._categories is None:
            # The json is read once: the split that defines the classes is loaded now.
            if self.train_ann:
                self.train_set = self._dataset(self.train_ann, self.train_images, self.augment, "train", None)
                self._categories = self.train_set.categories
            elif self.val_ann:
                self.val_set = self._dataset(self.val_ann, self.val_images, None, "val", None)
                self._categories = self.val_set.categories
            else:
                raise ValueError("set data.train_ann or data.val_ann")
        return self._categories

    def setup(self, stage: str | None = None) -> None:
        if stage in (None, "fit") and self.train_set is None:
            self.train_set = self._dataset(
                self.train_ann, self.train_images, self.augment, "train", self.categories
            )
        if stage in (None, "fit", "validate") and self.val_set is None:
            self.val_set = self._dataset(self.val_ann, self.val_images, None, "val", self.categories)
        for dataset in (self.train_set, self.val_set):
            if dataset is not None:  # request_targets may come after the set was loaded
                dataset.load_masks, dataset.load_keypoints = self.load_masks, self.load_keypoints

    def _dataset(
        self,
        ann: str | None,
        images: str | None,
        augment: AugmentConfig | None,
        split: str,
        categories: CategoryMap | None,
    ) -> CocoDetection:
        if not ann or not images:
            raise ValueError(f"set data.{split}_ann and data.{split}_images")
        size = self.image_size if split == "train" else self.val_image_size
        return CocoDetection(
            ann,
            images,
            build_transforms(size, augment),
            size,
            categories=categories,
            keypoint_sigma=self.keypoint_sigma,
            missing_images=self.missing_images,
            cache_images=self.cache_images,
            hflip=augment.hflip if augment is not None else 0.0,
            load_masks=self.load_masks,
            load_keypoints=self.load_keypoints,
            strict=self.strict,
            **(
                {
                    "copy_paste": augment.copy_paste,
                    "copy_paste_objects": augment.copy_paste_objects,
                    "copy_paste_classes": _names(augment.copy_paste_classes),
                }
                if augment is not None
                else {}
            ),
        )

    def transfer_batch_to_device(
        self, batch: Batch | None, device: torch.device, dataloader_idx: int
    ) -> Batch | None:
        return None if batch is None else batch.to(device)

    def set_epoch(self, epoch: int, max_epochs: int | None) -> None:
        """Mosaics stop for the last ``augment.close_mosaic`` epochs, and training batches are
        downscaled for the first ``augment.early_epochs`` (called at each epoch start)."""
        if self.augment is not None and self.augment.early_epochs:
            size = (
                early_image_size(self.image_size, self.augment.early_scale)
                if epoch < self.augment.early_epochs
                else self.image_size
            )
            if size != self.train_image_size:
                log.info("training at %d px from epoch %d (data.augment.early_epochs)", size, epoch)
            self.train_image_size = size
        if self._mosaic is None:
            return
        close = self.augment.close_mosaic
        on = max_epochs is None or max_epochs < 0 or epoch < max_epochs - close
        if self._mosaic.enabled and not on:
            log.info("mosaic off for the last %d epochs (data.augment.close_mosaic)", close)
        self._mosaic.enable(on)

    def on_after_batch_transfer(self, batch: Batch | None, dataloader_idx: int) -> Batch | None:
        # On the training process, after the workers: they keep drawing at image_size whatever the epoch.
        trainer = self.trainer
        if (
            batch is None
            or trainer is None
            or not trainer.training
            or self.train_image_size == self.image_size
        ):
            return batch
        return resize_batch(batch, self.train_image_size)

    def train_dataloader(self) -> DataLoader:
        dataset: Dataset = self.train_set
        if self.augment is not None and self.augment.mosaic > 0:
            if self._mosaic is None or self._mosaic.dataset is not self.train_set:
                self._mosaic = Mosaic(
                    self.train_set, self.augment.mosaic, self.image_size, self.augment.mosaic_scale
                )
            dataset = self._mosaic
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            sampler=self.train_sampler(dataset),
            drop_last=len(self.train_set) > self.batch_size,
            num_workers=self.num_workers,
            collate_fn=collate,
            persistent_workers=self.num_workers > 0,
        )

    def val_dataloader(self) -> DataLoader:
        dataset: Dataset = self.val_set
        fitting = self.trainer is not None and self.trainer.state.fn == TrainerFn.FITTING
        if fitting and self.val_subset is not None and self.val_subset < len(self.val_set):
            # Evenly spaced, so that every part of a sorted split is represented, and fixed, so
            # that validations compare.
            picks = np.linspace(0, len(self.val_set) - 1, self.val_subset).round().astype(int)
            dataset = Subset(self.val_set, picks.tolist())
            log.info(
                "validation during training: %d of %d images (data.val_subset)",
                len(dataset),
                len(self.val_set),
            )
        return DataLoader(
            dataset,
            batch_size=self.val_batch_size,
            shuffle=False,
            num_workers=self.num_workers,
            collate_fn=collate,
            persistent_workers=self.num_workers > 0,
        )


def _names(classes: str | Any | None) -> str | list[str] | None:
    """A class list from the config (an OmegaConf ListConfig) as plain strings."""
    return classes if classes is None or isinstance(classes, str) else [str(name) for name in classes]


class ShapesDataModule(CocoDataModule):
    """:class:`CocoDataModule` over the embedded shapes set, generated into ``root`` on first use.

    Args:
        root: where the set lives (its annotation and image paths are derived from it in the config).
        synthetic: :class:`detect.data.synthetic.ShapesConfig` fields.
        **kwargs: :class:`CocoDataModule` arguments.
    """

    def __init__(self, root: str, synthetic: dict[str, Any] | None = None, **kwargs: Any) -> None:
        self.root = Path(root)
        self.synthetic = ShapesConfig(**(synthetic or {}))
        super().__init__(**kwargs)
        # The class map is needed before prepare_data runs (to build the model).
        self.prepare_data()

    def prepare_data(self) -> None:
        ensure_shapes(self.root, self.synthetic)
