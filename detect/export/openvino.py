"""OpenVINO IR export, converted by OpenVINO from the ONNX export, with the metadata in ``rt_info``."""

from __future__ import annotations

import tempfile
from pathlib import Path

from detect.export.errors import ExportError, export_error
from detect.export.onnx import export_onnx
from detect.inference.deploy import DeployModel
from detect.inference.metadata import METADATA_KEY, ModelInfo

__all__ = ["export_openvino"]


def export_openvino(
    model: DeployModel, info: ModelInfo, path: str | Path, onnx_path: Path | None = None
) -> Path:
    """Write ``path`` (``.xml``, weights beside it in ``.bin``), fp32, dynamic batch.

    ``onnx_path``: an ONNX export of the same model to convert, instead of exporting one here.
    """
    try:
        import openvino as ov
    except ImportError as error:
        raise ExportError("OpenVINO is not installed: pip install 'detect[openvino]'") from error
    path = Path(path).with_suffix(".xml")
    with tempfile.TemporaryDirectory() as folder:
        onnx_path = onnx_path or export_onnx(model, info, Path(folder) / "model.onnx")
        try:
            converted = ov.convert_model(str(onnx_path))
        except Exception as error:  # OpenVINO's converter raises its own classes
            raise export_error(error, "OpenVINO", info.components) from error
    converted.set_rt_info(info.to_json(), [METADATA_KEY])
    path.parent.mkdir(parents=True, exist_ok=True)
    ov.save_model(converted, str(path), compress_to_fp16=False)
    return path
