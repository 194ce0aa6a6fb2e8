"""Learning-rate schedules as multiplicative factors for ``LambdaLR`` (picklable, so they checkpoint)."""

from __future__ import annotations

import math

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

__all__ = ["WarmupCosineFactor", "warmup_cosine"]


class WarmupCosineFactor:
    """Linear warm-up from ``warmup_start`` to 1 over ``warmup_steps``, then cosine down to ``min_ratio``."""

    def __init__(self, total_steps: int, warmup_steps: int, min_ratio: float, warmup_start: float) -> None:
        self.total_steps = max(total_steps, 1)
        self.warmup_steps = min(warmup_steps, self.total_steps - 1) if self.total_steps > 1 else 0
        self.min_ratio = min_ratio
        self.warmup_start = warmup_start

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return self.warmup_start + (1 - self.warmup_start) * step / self.warmup_steps
        progress = min((step - self.warmup_steps) / max(self.total_steps - self.warmup_steps, 1), 1.0)
        return self.min_ratio + (1 - self.min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def warmup_cosine(
    optimizer: Optimizer,
    total_steps: int,
    warmup_steps: int = 300,
    warmup_fraction: float | None = None,
    min_ratio: float = 0.05,
    warmup_start: float = 0.01,
) -> LambdaLR:
    """Per-step schedule: warm-up (``warmup_steps``, or ``warmup_fraction`` of all steps), then cosine.

    Args:
        optimizer: the optimizer whose groups' base LRs are scaled.
        total_steps: optimizer steps of the whole run.
        warmup_steps: warm-up length in steps, used when ``warmup_fraction`` is None.
        warmup_fraction: warm-up length as a fraction of ``total_steps``.
        min_ratio: final LR as a fraction of the base LR.
        warmup_start: first LR as a fraction of the base LR.
    """
    if not 0 <= min_ratio <= 1:
        raise ValueError(f"min_ratio must be in [0, 1], got {min_ratio}")
    if warmup_fraction is not None:
        warmup_steps = int(round(warmup_fraction * total_steps))
    return LambdaLR(optimizer, WarmupCosineFactor(total_steps, warmup_steps, min_ratio, warmup_start))
