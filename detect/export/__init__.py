"""Exporting a trained model to ONNX, TorchScript and OpenVINO, and checking the export against eager."""

from detect.export.errors import ExportError
from detect.export.exporter import FORMATS, SUFFIXES, export_model
from detect.export.onnx import export_onnx
from detect.export.openvino import export_openvino
from detect.export.parity import ParityReport, compare_outputs, match_detections
from detect.export.torchscript import export_torchscript

__all__ = [
    "FORMATS",
    "SUFFIXES",
    "ExportError",
    "ParityReport",
    "compare_outputs",
    "export_model",
    "export_onnx",
    "export_openvino",
    "export_torchscript",
    "match_detections",
]
