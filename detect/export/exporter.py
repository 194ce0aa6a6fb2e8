"""``export_model``: a checkpoint in, a model file that alone is enough to predict out."""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from detect.export.errors import ExportError
from detect.export.onnx import export_onnx
from detect.export.openvino import export_openvino
from detect.export.torchscript import export_torchscript
from detect.inference.checkpoint import load_checkpoint
from detect.inference.deploy import DeployModel, describe
from detect.models.fuse import fuse_conv_bn

__all__ = ["FORMATS", "SUFFIXES", "export_model"]

log = logging.getLogger(__name__)

SUFFIXES = {"onnx": ".onnx", "torchscript": ".torchscript", "openvino": ".xml"}
FORMATS = tuple(SUFFIXES)
_EXPORTERS = {"onnx": export_onnx, "torchscript": export_torchscript, "openvino": export_openvino}


def export_model(
    ckpt_path: str | Path,
    fmt: str = "onnx",
    output: str | Path | None = None,
    nms: bool = False,
    image_size: int | None = None,
) -> Path:
    """Export the checkpoint's (EMA) model to ``fmt``, BatchNorm folded, fp32, dynamic batch.

    Args:
        ckpt_path: a training checkpoint.
        fmt: ``"onnx"``, ``"torchscript"`` or ``"openvino"``.
        output: the file to write; default beside the checkpoint, named after it.
        nms: put selection and NMS inside the graph (outputs are then the detections).
        image_size: the fixed input side; default the training size.

    Returns:
        The written file.
    """
    if fmt not in _EXPORTERS:
        raise ExportError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    trained = load_checkpoint(ckpt_path, "cpu")
    fuse_conv_bn(trained.model)
    model = DeployModel(trained.model, nms=nms).eval()
    info = describe(model, trained.categories, image_size or trained.image_size, trained.choices)
    path = Path(output) if output else Path(ckpt_path).with_suffix(SUFFIXES[fmt])
    if path.suffix.lower() != SUFFIXES[fmt]:
        raise ExportError(f"{path}: a {fmt} file must end in {SUFFIXES[fmt]}")
    with torch.no_grad():
        return _EXPORTERS[fmt](model, info, path)
