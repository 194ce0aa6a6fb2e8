"""The parity matrix: every backbone x head x format, exported and compared with eager on real photos.

Each cell builds the model from the configs as training does, gives it weights whose outputs are
spread (random convolutions, BatchNorm statistics taken on the photos themselves: a freshly
initialised head scores every anchor alike, and ties make "the same detections" meaningless),
exports it, and runs both on the same letterboxed photos: the raw outputs must agree within the
tolerance and the detections after decoding and NMS must be the same.
"""

from __future__ import annotations

import csv
import json
import logging
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from detect.data.coco import CategoryMap
from detect.data.transforms import build_transforms
from detect.export.errors import ExportError
from detect.export.exporter import SUFFIXES
from detect.export.onnx import export_onnx
from detect.export.openvino import export_openvino
from detect.export.parity import compare_outputs, cutoff_of, match_detections
from detect.export.torchscript import export_torchscript
from detect.inference.deploy import DeployModel, describe
from detect.inference.metadata import ModelInfo
from detect.inference.predictor import Predictor
from detect.inference.runtimes import OnnxRuntime, OpenVINORuntime, Runtime, TorchScriptRuntime
from detect.inference.sources import iter_frames
from detect.models.fuse import fuse_conv_bn

__all__ = ["CellResult", "parity_matrix", "spread_weights", "write_matrix"]

log = logging.getLogger(__name__)

TOLERANCE = 1e-4


@dataclass
class CellResult:
    """One backbone x head x format cell."""

    backbone: str
    head: str
    format: str
    passed: bool
    max_error: float | None = None
    mismatched: int = 0
    images: int = 0
    detections: int = 0
    export_s: float | None = None
    eager_ms: float | None = None
    exported_ms: float | None = None
    reason: str = ""


def spread_weights(model: nn.Module, images: torch.Tensor, seed: int = 0) -> None:
    """Random He-initialised convolutions and linears, then BatchNorm statistics from ``images``.

    He initialisation gives the heads' logits a spread (a fresh head scores every anchor alike);
    deep networks with such weights amplify float rounding far more than trained ones do, which
    is where the matrix's failing cells come from (see ``docs/export.md``).
    """
    generator = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, nn.Conv2d | nn.Linear):
            fan_in = module.weight[0].numel()
            with torch.no_grad():
                module.weight.copy_(
                    torch.randn(module.weight.shape, generator=generator) * (2.0 / fan_in) ** 0.5
                )
                if module.bias is not None:
                    module.bias.copy_(torch.randn(module.bias.shape, generator=generator) * 0.5)
    # Box sides start mid-size, as in training: around a zero bias a direct-distance head
    # (reg_max=1) would draw boxes of a few pixels, whose IoU any rounding moves. (The DFL's
    # softmax does not change when every bin logit gains the same constant.)
    head = getattr(model, "head", None)
    with torch.no_grad():
        for branch in getattr(head, "box_branches", ()):
            branch[-1].bias.add_(head.initial_box_bias)
    for norm in (m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)):
        norm.reset_running_stats()
        norm.momentum = None  # a cumulative average over the calibration passes
    model.train()
    with torch.no_grad():
        for _ in range(2):
            model(images)
    model.eval()


def _time(function: Callable[[], Any], runs: int = 3) -> float:
    function()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return 1000 * float(np.median(times))


def _runtime(fmt: str, path: Path) -> Runtime:
    if fmt == "onnx":
        return OnnxRuntime(path)
    if fmt == "torchscript":
        return TorchScriptRuntime(path)
    return OpenVINORuntime(path)


def _export(fmt: str, model: DeployModel, info: ModelInfo, folder: Path) -> Path:
    path = folder / f"model{SUFFIXES[fmt]}"
    if fmt == "onnx":
        return export_onnx(model, info, path)
    if fmt == "torchscript":
        return export_torchscript(model, info, path)
    onnx_path = folder / "model.onnx"
    return export_openvino(model, info, path, onnx_path if onnx_path.exists() else None)


class _Eager:
    """The eager reference as a runtime, so both sides go through :class:`Predictor` alike."""

    name = "torch"

    def __init__(self, model: DeployModel, info: ModelInfo) -> None:
        self.model, self.info, self.path = model, info, Path("eager")

    @torch.inference_mode()
    def __call__(self, images: np.ndarray) -> dict[str, torch.Tensor]:
        return dict(zip(self.info.outputs, self.model(torch.from_numpy(images))))

    def resize(self, image_size: int) -> None:
        raise ValueError("fixed size")


def parity_matrix(
    build: Callable[[str, str, CategoryMap], nn.Module],
    backbones: Sequence[str],
    heads: dict[str, tuple[CategoryMap, Sequence[Path]]],
    formats: Sequence[str],
    image_size: int = 320,
    on_result: Callable[[CellResult], None] | None = None,
) -> list[CellResult]:
    """Run every cell.

    Args:
        build: ``(backbone, head, categories) -> Detector``, e.g. composed from ``conf/``.
        heads: per head name, its class map and the photos to compare on.
        formats: of ``onnx``, ``torchscript``, ``openvino``.
        on_result: called after each cell (to print progress).
    """
    transform = build_transforms(image_size)
    results = []
    for head, (categories, photos) in heads.items():
        frames = [frame.image for frame in iter_frames(list(photos))]
        batch = np.stack(
            [
                transform(
                    image=f, bboxes=np.zeros((0, 4)), labels=[], instances=[], keypoints=np.zeros((0, 2))
                )["image"].transpose(2, 0, 1)
                for f in frames
            ]
        )
        for backbone in backbones:
            cells = _run_backbone(build, backbone, head, categories, batch, formats, image_size)
            for cell in cells:
                results.append(cell)
                if on_result:
                    on_result(cell)
    return results


def _run_backbone(
    build: Callable[[str, str, CategoryMap], nn.Module],
    backbone: str,
    head: str,
    categories: CategoryMap,
    batch: np.ndarray,
    formats: Sequence[str],
    image_size: int,
) -> list[CellResult]:
    try:
        # Parameters spread_weights leaves alone (position embeddings, norms) come from the global
        # generator: seeded, a cell is the same model whatever ran before it in the process.
        torch.manual_seed(0)
        detector = build(backbone, head, categories)
        spread_weights(detector, torch.from_numpy(batch))
        fuse_conv_bn(detector)
        model = DeployModel(detector).eval()
        info = describe(model, categories, image_size, {"backbone": backbone, "head": head})
    except Exception as error:  # a cell that cannot even be built is reported, not fatal
        reason = f"build failed: {str(error).splitlines()[0][:160]}"
        return [CellResult(backbone, head, fmt, False, reason=reason) for fmt in formats]
    eager = Predictor(_Eager(model, info))  # type: ignore[arg-type]
    reference = eager.runtime(batch)
    ref_detections = eager.infer(batch)
    eager_ms = _time(lambda: eager.infer(batch[:1]))
    config = info.postprocess
    cutoffs = cutoff_of(ref_detections, config.score_thresh, config.max_det)
    cells = []
    with tempfile.TemporaryDirectory() as folder:
        for fmt in formats:
            cell = CellResult(backbone, head, fmt, False, images=len(batch), eager_ms=round(eager_ms, 1))
            cell.detections = sum(len(d) for d in ref_detections)
            try:
                start = time.perf_counter()
                path = _export(fmt, model, info, Path(folder))
                cell.export_s = round(time.perf_counter() - start, 1)
                exported = Predictor(_runtime(fmt, path))
                outputs = exported.runtime(batch)
                errors = compare_outputs(reference, outputs)
                detections = exported.infer(batch)
                cell.max_error = max(errors.values())
                cell.mismatched = sum(
                    not match_detections(a, b, c, nms_iou=config.nms_iou)
                    for a, b, c in zip(ref_detections, detections, cutoffs)
                )
                cell.exported_ms = round(_time(lambda run=exported: run.infer(batch[:1])), 1)
                cell.passed = cell.max_error <= TOLERANCE and cell.mismatched == 0
                if not cell.passed:
                    worst = max(errors, key=errors.get)
                    cell.reason = (
                        f"{worst} differs by {errors[worst]:.1e}"
                        if cell.max_error > TOLERANCE
                        else (f"{cell.mismatched} images with other detections")
                    )
            except ExportError as error:
                cell.reason = str(error)
            except Exception as error:  # a runtime failure is a failing cell with its reason
                cell.reason = f"{type(error).__name__}: {str(error).splitlines()[0][:200]}"
            cells.append(cell)
    return cells


def write_matrix(results: list[CellResult], markdown: Path, machine: str = "") -> None:
    """``export_matrix.md``-style table plus ``.csv`` and ``.json`` beside it."""
    markdown.parent.mkdir(parents=True, exist_ok=True)
    rows = [asdict(r) for r in results]
    with markdown.with_suffix(".csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    markdown.with_suffix(".json").write_text(json.dumps(rows, indent=1))
    passed = sum(r.passed for r in results)
    lines = [
        f"{passed} of {len(results)} cells pass (raw outputs within {TOLERANCE:g}, same detections)."
        + (f" {machine}" if machine else ""),
        "",
        "| backbone | head | format | pass | max error | images differing | export s | eager ms | exported ms | why not |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        error = "" if r.max_error is None else f"{r.max_error:.1e}"
        lines.append(
            f"| {r.backbone} | {r.head} | {r.format} | {'yes' if r.passed else '**no**'} | {error} | "
            f"{r.mismatched}/{r.images} | {r.export_s if r.export_s is not None else ''} | "
            f"{r.eager_ms if r.eager_ms is not None else ''} | {r.exported_ms if r.exported_ms is not None else ''} | "
            f"{r.reason.replace('|', '/')} |"
        )
    markdown.write_text("\n".join(lines) + "\n")
