"""Lightning callbacks used by the training task."""

from __future__ import annotations

import math
import statistics
import time
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, WeightAveraging
from torch import Tensor

__all__ = ["EMA", "DataEpoch", "EpochTimer"]


class _RampedEMA:
    """EMA update whose decay ramps up as ``decay * (1 - exp(-updates / tau))``.

    Early in training the weights change fast; a fixed high decay would make the average lag
    behind them for most of a short run.
    """

    def __init__(self, decay: float, tau: float) -> None:
        self.decay = decay
        self.tau = tau
        # Set by the callback from the trainer's step count: reading AveragedModel's on-device
        # counter here would cost a GPU->CPU sync every training step.
        self.updates = 0

    def __call__(self, averaged: list[Tensor], current: list[Tensor], num_averaged: Tensor) -> None:
        decay = self.decay * (1 - math.exp(-self.updates / self.tau))
        if averaged[0].is_floating_point():
            torch._foreach_lerp_(averaged, current, 1 - decay)
        else:
            torch._foreach_copy_(averaged, current)


class EMA(WeightAveraging):
    """Exponential moving average of weights and buffers, used for validation and saved checkpoints.

    Args:
        decay: asymptotic decay per optimizer step.
        tau: steps over which the decay ramps up from 0.
    """

    def __init__(self, decay: float = 0.9998, tau: float = 500.0) -> None:
        if not 0 <= decay < 1:
            raise ValueError(f"decay must be in [0, 1), got {decay}")
        self._ramp = _RampedEMA(decay, tau)
        super().__init__(use_buffers=True, multi_avg_fn=self._ramp)

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self._ramp.updates = trainer.global_step
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)


class EpochTimer(Callback):
    """Time every training epoch (data loading included) and report images per second.

    The first epoch is kept apart: it pays for warm-up (allocator, kernel selection, caches).
    """

    def __init__(self) -> None:
        self.epoch_seconds: list[float] = []
        self.epoch_images: list[int] = []
        self._start = 0.0
        self._images = 0

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start = time.perf_counter()
        self._images = 0

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self._images += len(batch)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        seconds = time.perf_counter() - self._start
        self.epoch_seconds.append(seconds)
        self.epoch_images.append(self._images)
        pl_module.log("train/epoch_seconds", seconds)

    def summary(self) -> dict[str, float]:
        """Median seconds per epoch and images per second over the epochs after the first."""
        seconds = self.epoch_seconds[1:] or self.epoch_seconds
        images = self.epoch_images[1:] or self.epoch_images
        if not seconds:
            return {}
        rates = sorted(n / s for n, s in zip(images, seconds))
        return {
            "train/sec_per_epoch": round(statistics.median(seconds), 2),
            "train/img_per_s": round(rates[len(rates) // 2], 2),
        }


class DataEpoch(Callback):
    """Tells the data module which epoch starts, for augmentations that change over a run
    (mosaics stop for the last epochs); data modules without ``set_epoch`` are left alone."""

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        datamodule = getattr(trainer, "datamodule", None)
        if hasattr(datamodule, "set_epoch"):
            datamodule.set_epoch(trainer.current_epoch, trainer.max_epochs)
