"""Surviving faults during training: atomic checkpoints, RNG state, non-finite steps, resuming."""

from __future__ import annotations

import logging
import os
import random
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.fabric.utilities.cloud_io import get_filesystem
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.plugins.io import TorchCheckpointIO

__all__ = ["AtomicCheckpointIO", "NonFiniteGuard", "RngState", "TrainingDiverged", "find_last_checkpoint"]

log = logging.getLogger(__name__)


class TrainingDiverged(ValueError):
    """Too many optimizer steps in a row had non-finite gradients: the run stops, its checkpoint intact.

    A ``ValueError`` because a value the user chose (learning rate, data) is the cause, and the
    command-line tools show those as one line.
    """


class AtomicCheckpointIO(TorchCheckpointIO):
    """Write a checkpoint to a temporary file beside it, then rename it into place.

    A kill during a save leaves the previous checkpoint whole. (Lightning's own writer stages the
    file in the system's temp folder and moves it, which is a copy, not a rename, whenever that
    folder is on another file system.)
    """

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any = None
    ) -> None:
        if not isinstance(get_filesystem(path), type(get_filesystem("."))):
            return super().save_checkpoint(checkpoint, path, storage_options)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        staging = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        try:
            with staging.open("wb") as file:
                torch.save(checkpoint, file)
                file.flush()
                os.fsync(file.fileno())
            os.replace(staging, path)
        finally:
            staging.unlink(missing_ok=True)


class RngState(Callback):
    """Save and restore the Python, NumPy and torch generators, so a resumed run draws as it would have."""

    def state_dict(self) -> dict[str, Any]:
        # Tensors and plain containers only, so that checkpoints still load with weights_only=True.
        name, keys, position, has_gauss, gauss = np.random.get_state()
        state = {
            "python": random.getstate(),
            "numpy": (name, torch.from_numpy(keys.astype(np.int64)), position, has_gauss, gauss),
            "torch": torch.get_rng_state(),
        }
        if torch.cuda.is_available():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        version, internal, gauss_next = state_dict["python"]
        random.setstate((version, tuple(internal), gauss_next))
        name, keys, position, has_gauss, gauss = state_dict["numpy"]
        np.random.set_state((name, keys.numpy().astype(np.uint32), position, has_gauss, gauss))
        torch.set_rng_state(state_dict["torch"])
        if "cuda" in state_dict and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state_dict["cuda"])


class NonFiniteGuard(Callback):
    """Skip an optimizer step whose gradients hold NaN or inf; stop after ``patience`` in a row.

    A NaN loss gives NaN gradients, so the check on gradients covers both. The step is skipped
    by dropping every gradient (the optimizer leaves parameters without one untouched), so the
    weights, the EMA and the next checkpoint stay finite. In DDP the gradients are already
    reduced when this runs, so every rank skips the same steps.

    Args:
        patience: non-finite steps in a row that stop the run (:class:`TrainingDiverged`).
    """

    def __init__(self, patience: int = 20) -> None:
        if patience < 1:
            raise ValueError(f"patience must be >= 1, got {patience}")
        self.patience = patience
        self.in_a_row = 0
        self.skipped = 0

    def on_before_optimizer_step(
        self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: torch.optim.Optimizer
    ) -> None:
        grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        # One fused norm over all gradients (NaN or inf anywhere makes it non-finite) and one
        # device-to-host read per step, instead of a check per tensor.
        if not grads or torch.isfinite(torch.nn.utils.get_total_norm(grads)):
            self.in_a_row = 0
            return
        self.in_a_row += 1
        self.skipped += 1
        loss = trainer.callback_metrics.get("train/loss")
        log.warning(
            "step %d: non-finite gradients (last logged loss %s); step skipped (%d in a row, %d in all)",
            trainer.global_step,
            "n/a" if loss is None else f"{float(loss):.4g}",
            self.in_a_row,
            self.skipped,
        )
        for group in optimizer.param_groups:
            for parameter in group["params"]:
                parameter.grad = None
        if self.in_a_row >= self.patience:
            raise TrainingDiverged(
                f"training diverged: {self.in_a_row} steps in a row with NaN/inf gradients at step "
                f"{trainer.global_step}; the last checkpoint is intact (lower optim.lr, or check the data "
                "with tools/check_data.py)"
            )

    def state_dict(self) -> dict[str, Any]:
        return {"skipped": self.skipped}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.skipped = state_dict.get("skipped", 0)


def find_last_checkpoint(output_dir: Path, siblings: bool = True) -> Path | None:
    """The ``last.ckpt`` to resume: this run folder's own, else (``siblings``) the newest of its
    sibling runs. A sweep job passes ``siblings=False``: its siblings are other jobs."""
    own = output_dir / "checkpoints" / "last.ckpt"
    if own.is_file() or not siblings:
        return own if own.is_file() else None
    siblings = [
        path
        for path in output_dir.parent.glob("*/checkpoints/last.ckpt")
        if path.is_file() and path.parent.parent != output_dir
    ]
    return max(siblings, key=lambda path: path.stat().st_mtime, default=None)
