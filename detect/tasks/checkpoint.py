"""Rebuilding a trained task from a checkpoint file alone."""

from __future__ import annotations

from pathlib import Path

import torch

from detect.tasks.module import DetectionTask

__all__ = ["load_task"]


def load_task(ckpt_path: str | Path, device: str | torch.device = "cpu") -> DetectionTask:
    """Load a :class:`DetectionTask` (its config and class map travel inside the checkpoint)."""
    path = Path(ckpt_path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    task = DetectionTask.load_from_checkpoint(path, map_location=device, weights_only=True)
    return task.eval()
