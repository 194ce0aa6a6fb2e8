"""Lightning callbacks used by the training task."""

from __future__ import annotations

import math

import torch
from lightning.pytorch.callbacks import WeightAveraging
from torch import Tensor

__all__ = ["EMA"]


class _RampedEMA:
    """EMA update whose decay ramps up as ``decay * (1 - exp(-updates / tau))``.

    Early in training the weights change fast; a fixed high decay would make the average lag
    behind them for most of a short run.
    """

    def __init__(self, decay: float, tau: float) -> None:
        self.decay = decay
        self.tau = tau

    def __call__(self, averaged: list[Tensor], current: list[Tensor], num_averaged: Tensor) -> None:
        decay = self.decay * (1 - math.exp(-float(num_averaged) / self.tau))
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
        super().__init__(use_buffers=True, multi_avg_fn=_RampedEMA(decay, tau))
