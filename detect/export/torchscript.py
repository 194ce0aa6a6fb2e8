"""TorchScript export by tracing, with the model's metadata as an extra file in the archive."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

from detect.export.errors import export_error
from detect.inference.deploy import DeployModel
from detect.inference.metadata import ModelInfo
from detect.inference.runtimes import TORCHSCRIPT_METADATA

__all__ = ["export_torchscript"]


def export_torchscript(model: DeployModel, info: ModelInfo, path: str | Path) -> Path:
    """Trace ``model`` at ``info.image_size`` and save it to ``path``.

    Tracing records one batch size's shapes where Python code reads them, so the trace is made at
    batch 2 and checked at batch 1 and 3: a model whose trace does not generalise fails here.
    """
    path = Path(path)
    size = info.image_size
    example = torch.full((2, 3, size, size), 114, dtype=torch.uint8)
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            traced = torch.jit.trace(model, (example,), check_trace=False, strict=False)
            traced = torch.jit.freeze(traced.eval())
            for batch in (1, 3):
                traced(torch.full((batch, 3, size, size), 114, dtype=torch.uint8))
    except Exception as error:  # tracing raises many kinds; all mean "cannot convert"
        raise export_error(error, "TorchScript", info.components) from error
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.jit.save(traced, str(path), _extra_files={TORCHSCRIPT_METADATA: info.to_json()})
    return path
