"""Rebuilding a trained task from a checkpoint file alone."""

from __future__ import annotations

from pathlib import Path

import torch

from detect.models.backbones._weights import LoadReport, load_matching, read_state_dict
from detect.tasks.module import DetectionTask

__all__ = ["load_task", "warm_start"]


def load_task(ckpt_path: str | Path, device: str | torch.device = "cpu") -> DetectionTask:
    """Load a :class:`DetectionTask` (its config and class map travel inside the checkpoint)."""
    path = Path(ckpt_path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    task = DetectionTask.load_from_checkpoint(path, map_location=device, weights_only=True)
    return task.eval()


def warm_start(model: torch.nn.Module, path: str | Path) -> LoadReport:
    """Initialise ``model`` from the weights of another run's checkpoint (or any state-dict file).

    Tensors whose names and shapes match are loaded; the rest (a head for other classes or
    another task) keeps its fresh initialisation. Only tensors are read, nothing is unpickled.
    """
    report = load_matching(model, read_state_dict(path), name=str(path))
    if not report.loaded:
        raise ValueError(
            f"nothing in {path} matches this model ({report.summary()}); is it a detect checkpoint?"
        )
    return report
