"""The engines that run a model: PyTorch (a checkpoint), TorchScript, ONNX Runtime and OpenVINO.

Each takes a ``(B, 3, H, W)`` uint8 batch of letterboxed images and returns the model's named
outputs as tensors; each reads the :class:`ModelInfo` that says how to use them. A checkpoint is
rebuilt into :class:`DeployModel`; an exported file carries the same function and its metadata.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from detect.inference.checkpoint import load_checkpoint
from detect.inference.deploy import DeployModel, describe
from detect.inference.metadata import METADATA_KEY, ModelInfo
from detect.inference.onednn import onednn_available, use_onednn
from detect.models.fold_input import fold_input_normalization
from detect.models.fuse import fuse_conv_bn

__all__ = [
    "TORCHSCRIPT_METADATA",
    "ModelFileError",
    "OnnxRuntime",
    "OpenVINORuntime",
    "Runtime",
    "TorchRuntime",
    "TorchScriptRuntime",
    "open_runtime",
]

# The name of the metadata file stored inside a TorchScript archive.
TORCHSCRIPT_METADATA = f"{METADATA_KEY}.json"
_FORMATS = {
    ".ckpt": "checkpoint",
    ".pt": "torchscript",
    ".torchscript": "torchscript",
    ".onnx": "onnx",
    ".xml": "openvino",
}


class ModelFileError(ValueError):
    """A model file that cannot be read, or was not written by ``tools/export.py``."""


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0][:300] if text else type(error).__name__


def _threads() -> int:
    return int(os.environ.get("DETECT_THREADS", 0)) or torch.get_num_threads()


class Runtime:
    """A loaded model: ``runtime(images)`` gives its outputs by name.

    Attributes:
        info: the model's contract (classes, input size, outputs, postprocess).
        path: the file it was loaded from.
        name: ``"torch"``, ``"torchscript"``, ``"onnxruntime"`` or ``"openvino"``.
    """

    name = "runtime"

    def __init__(self, info: ModelInfo, path: Path) -> None:
        self.info = info
        self.path = path

    def __call__(self, images: np.ndarray) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def resize(self, image_size: int) -> None:
        """Run at another input size, where the model allows it."""
        if image_size != self.info.image_size:
            raise ModelFileError(
                f"{self.path.name} was exported at {self.info.image_size} px and cannot run at {image_size}: "
                f"export it again with image_size={image_size}"
            )

    def _named(self, outputs: Any) -> dict[str, torch.Tensor]:
        return {name: torch.as_tensor(np.asarray(value)) for name, value in zip(self.info.outputs, outputs)}


class TorchRuntime(Runtime):
    """A training checkpoint, rebuilt and run eagerly in PyTorch.

    Args:
        path: the ``.ckpt`` file.
        device: where to run.
        precision: ``"fp32"``, or ``"bf16"`` (autocast; fast on CPUs with AMX and on GPUs).
        fuse: fold BatchNorm into the convolutions before it.
        nms: put selection inside the module (as an export with ``nms=True`` does).
        image_size: the input side; default the training size.
        onednn: on a CPU, run each convolution and its activation as one oneDNN primitive with
            weights packed once (:mod:`detect.inference.onednn`); needs ``fuse``.
        fold_input: fold the input normalization into the first convolution, which then reads
            the uint8 pixels (:mod:`detect.models.fold_input`); needs ``fuse``.
    """

    name = "torch"

    def __init__(
        self,
        path: str | Path,
        device: str | torch.device = "cpu",
        precision: str = "fp32",
        fuse: bool = True,
        nms: bool = False,
        image_size: int | None = None,
        onednn: bool = True,
        fold_input: bool = True,
    ) -> None:
        if precision not in ("fp32", "bf16"):
            raise ValueError(f"precision must be fp32 or bf16, not {precision!r}")
        trained = load_checkpoint(path, device)
        self.trained = trained
        detector = trained.model
        if fuse:
            fuse_conv_bn(detector)
            if fold_input:
                fold_input_normalization(detector)
        # NHWC lets oneDNN (CPU, notably with AMX bf16) and cuDNN pick their fastest conv kernels.
        detector.to(memory_format=torch.channels_last)
        self.device = torch.device(device)
        self.precision = precision
        dtype = torch.bfloat16 if precision == "bf16" else torch.float32
        self.onednn = bool(onednn and fuse and self.device.type == "cpu" and onednn_available(dtype))
        if self.onednn:
            use_onednn(detector)
        self.model = DeployModel(detector, nms=nms)
        info = describe(self.model, trained.categories, image_size or trained.image_size, trained.choices)
        super().__init__(info, Path(path))

    def resize(self, image_size: int) -> None:
        self.info = describe(self.model, self.trained.categories, image_size, self.trained.choices)

    @torch.inference_mode()
    def __call__(self, images: np.ndarray) -> dict[str, torch.Tensor]:
        batch = torch.as_tensor(images).to(self.device)
        autocast = (
            torch.autocast(self.device.type, dtype=torch.bfloat16)
            if self.precision == "bf16"
            else contextlib.nullcontext()
        )
        with autocast:
            outputs = self.model(batch)
        return {
            name: value.float() if value.is_floating_point() else value
            for name, value in zip(self.info.outputs, outputs)
        }


class TorchScriptRuntime(Runtime):
    """A TorchScript file from ``tools/export.py format=torchscript``."""

    name = "torchscript"

    def __init__(self, path: str | Path, device: str | torch.device = "cpu") -> None:
        path = Path(path)
        extra = {TORCHSCRIPT_METADATA: ""}
        try:
            self.module = torch.jit.load(str(path), map_location=device, _extra_files=extra)
        except (RuntimeError, ValueError) as error:
            raise ModelFileError(f"cannot read {path} as TorchScript: {_first_line(error)}") from error
        if not extra[TORCHSCRIPT_METADATA]:
            raise ModelFileError(f"{path} holds no detect metadata: it was not exported by tools/export.py")
        text = extra[TORCHSCRIPT_METADATA]
        info = ModelInfo.from_json(text.decode() if isinstance(text, bytes) else text, str(path))
        self.device = torch.device(device)
        super().__init__(info, path)

    @torch.inference_mode()
    def __call__(self, images: np.ndarray) -> dict[str, torch.Tensor]:
        outputs = self.module(torch.as_tensor(images).to(self.device))
        return dict(zip(self.info.outputs, outputs))


class OnnxRuntime(Runtime):
    """An ONNX file run by ONNX Runtime.

    Args:
        providers: execution providers, default CPU.
        threads: intra-op threads (default: as many as PyTorch uses).
    """

    name = "onnxruntime"

    def __init__(
        self, path: str | Path, providers: list[str] | None = None, threads: int | None = None
    ) -> None:
        import onnxruntime as ort

        path = Path(path)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or _threads()
        options.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(
                str(path), options, providers=providers or ["CPUExecutionProvider"]
            )
        except Exception as error:  # onnxruntime raises its own unexported exception classes
            raise ModelFileError(f"cannot read {path} as an ONNX model: {_first_line(error)}") from error
        text = self.session.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
        if text is None:
            raise ModelFileError(f"{path} holds no detect metadata: it was not exported by tools/export.py")
        info = ModelInfo.from_json(text, str(path))
        inputs = self.session.get_inputs()
        if len(inputs) != 1 or inputs[0].name != info.input_name:
            raise ModelFileError(
                f"{path}: expected one input named {info.input_name!r}, found {[i.name for i in inputs]}"
            )
        super().__init__(info, path)

    def __call__(self, images: np.ndarray) -> dict[str, torch.Tensor]:
        outputs = self.session.run(self.info.outputs, {self.info.input_name: np.ascontiguousarray(images)})
        return {name: torch.from_numpy(value) for name, value in zip(self.info.outputs, outputs)}


class OpenVINORuntime(Runtime):
    """An OpenVINO IR (``.xml`` + ``.bin``) from ``tools/export.py format=openvino``.

    Args:
        precision: ``"fp32"`` (default; OpenVINO would otherwise pick bf16 on AMX CPUs) or ``"bf16"``.
    """

    name = "openvino"

    def __init__(self, path: str | Path, precision: str = "fp32", threads: int | None = None) -> None:
        try:
            import openvino as ov
        except ImportError as error:
            raise ModelFileError("OpenVINO is not installed: pip install 'detect[openvino]'") from error
        path = Path(path)
        core = ov.Core()
        try:
            model = core.read_model(str(path))
        except RuntimeError as error:
            raise ModelFileError(f"cannot read {path} as an OpenVINO model: {_first_line(error)}") from error
        if not model.has_rt_info([METADATA_KEY]):
            raise ModelFileError(f"{path} holds no detect metadata: it was not exported by tools/export.py")
        info = ModelInfo.from_json(model.get_rt_info([METADATA_KEY]).astype(str), str(path))
        hint = {"fp32": "f32", "bf16": "bf16"}[precision]
        config = {"INFERENCE_PRECISION_HINT": hint, "INFERENCE_NUM_THREADS": threads or _threads()}
        self.compiled = core.compile_model(model, "CPU", config)
        super().__init__(info, path)

    def __call__(self, images: np.ndarray) -> dict[str, torch.Tensor]:
        results = self.compiled(np.ascontiguousarray(images))
        return {
            name: torch.from_numpy(np.asarray(results[output]))
            for name, output in zip(self.info.outputs, self.compiled.outputs)
        }


def open_runtime(path: str | Path, device: str | torch.device = "cpu", **options: Any) -> Runtime:
    """The runtime for ``path``, chosen by its suffix (``.ckpt``, ``.pt``/``.torchscript``, ``.onnx``, ``.xml``).

    ``options`` go to the runtime (``precision``, ``fuse``, ``threads``...).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"model file not found: {path}")
    kind = _FORMATS.get(path.suffix.lower())
    if kind is None:
        raise ModelFileError(f"{path}: unknown model format; expected one of {sorted(_FORMATS)}")
    if kind == "checkpoint":
        return TorchRuntime(path, device, **options)
    if kind == "torchscript":
        return TorchScriptRuntime(path, device)
    if kind == "onnx":
        return OnnxRuntime(path, **{k: v for k, v in options.items() if k == "threads"})
    return OpenVINORuntime(path, **{k: v for k, v in options.items() if k in ("precision", "threads")})
