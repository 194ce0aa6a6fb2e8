"""ONNX export: torch's exporter, then onnxslim, with the model's metadata in ``metadata_props``."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import torch

from detect.export.errors import export_error
from detect.inference.deploy import DeployModel
from detect.inference.metadata import METADATA_KEY, ModelInfo

__all__ = ["OPSET", "export_onnx"]

log = logging.getLogger(__name__)
# The exporter's graph passes log every step at INFO, a hundred lines an export under Hydra's logging.
for _name in ("onnx_ir", "onnxscript"):
    logging.getLogger(_name).setLevel(logging.WARNING)

OPSET = 18
# The largest batch the dynamic dimension is declared for (the runtime accepts any up to it).
MAX_BATCH = 256


def export_onnx(model: DeployModel, info: ModelInfo, path: str | Path, simplify: bool = True) -> Path:
    """Write ``model`` to ``path`` as ONNX with a dynamic batch dimension.

    Raises:
        ExportError: an operator the exporter cannot convert (named, with the backbone).
    """
    import onnx

    path = Path(path)
    size = info.image_size
    # An example batch of 2: torch.export specialises a dimension it sees at size 1.
    example = torch.full((2, 3, size, size), 114, dtype=torch.uint8)
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                model,
                (example,),
                dynamo=True,
                input_names=[info.input_name],
                output_names=list(info.outputs),
                dynamic_shapes={"images": {0: batch}},
                opset_version=OPSET,
                verbose=False,
                report=False,
            )
    except Exception as error:  # the exporter raises many kinds; all mean "cannot convert"
        raise export_error(error, "ONNX", info.components) from error
    proto = program.model_proto
    if simplify:
        proto = _slim(proto)
    entry = proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, info.to_json()
    onnx.checker.check_model(proto)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(proto, str(path))
    return path


def _slim(proto):  # type: ignore[no-untyped-def]
    """Constant folding and dead-node removal by onnxslim, keeping the graph as it is without it."""
    try:
        import onnxslim
    except ImportError:
        log.info("onnxslim is not installed; the ONNX graph is written unsimplified")
        return proto
    return onnxslim.slim(proto)
