"""Export entry: a checkpoint in, an ONNX / TorchScript / OpenVINO file out, checked against eager."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from omegaconf import DictConfig
from torchvision.ops import box_iou
from tqdm import tqdm

from detect.data.synthetic import ShapesConfig, render_sample
from detect.export import ExportError, export_model
from detect.export.parity import compare_outputs, cutoff_of, match_detections
from detect.export.quantize import quantize_onnx
from detect.inference import Predictor, load, load_checkpoint
from detect.inference.sources import SourceError, find_files, iter_frames

__all__ = ["export"]

log = logging.getLogger(__name__)

CHECK_THRESH = 0.05


def export(cfg: DictConfig) -> Path:
    """Write ``cfg.ckpt_path`` as ``cfg.format``; with ``cfg.check``, compare it with the checkpoint."""
    if cfg.get("int8"):
        if cfg.format != "onnx":
            raise ExportError(f"int8=true quantizes an ONNX export; format={cfg.format} cannot take it")
        calibration = calibration_source(cfg.ckpt_path, cfg.calib_images)
    path = export_model(cfg.ckpt_path, cfg.format, cfg.output, nms=cfg.nms, image_size=cfg.image_size)
    # OpenVINO writes its weights beside the .xml, in a .bin of the same name.
    size_mb = sum(p.stat().st_size for p in (path, path.with_suffix(".bin")) if p.exists()) / 2**20
    print(f"exported {path} ({size_mb:.1f} MB)")
    if cfg.check:
        report = check_export(cfg.ckpt_path, path)
        print(report)
    if cfg.get("int8"):
        int8_path = export_int8(path, calibration, cfg.calib_count)
        size_mb = int8_path.stat().st_size / 2**20
        print(f"exported {int8_path} ({size_mb:.1f} MB, INT8)")
        if cfg.check:
            print(check_export(cfg.ckpt_path, int8_path, strict=False))
    return path


def calibration_source(ckpt_path: str | Path, images: str | None) -> str:
    """Where INT8 calibration images come from: ``images``, or the checkpoint's training images."""
    if images is None:
        images = load_checkpoint(ckpt_path).config.get("data", {}).get("train_images")
    if not images:
        raise ExportError("INT8 calibration needs images: pass calib_images=FOLDER")
    try:
        find_files(str(images))
    except SourceError as error:
        raise ExportError(f"INT8 calibration needs images: {error}; pass calib_images=FOLDER") from None
    return str(images)


def export_int8(onnx_path: Path, images: str, count: int) -> Path:
    """Quantize ``onnx_path`` to ``<stem>.int8.onnx``, calibrated on ``count`` images of ``images``."""
    predictor: Predictor = load(onnx_path)
    frames = iter_frames(images)
    inputs = (predictor.letterbox(frame.image)[0] for _, frame in zip(range(int(count)), frames))
    output = onnx_path.with_name(f"{onnx_path.stem}.int8.onnx")
    return quantize_onnx(onnx_path, output, tqdm(inputs, total=int(count), desc="calibrate", unit="img"))


def check_export(ckpt_path: str | Path, path: Path, count: int = 2, strict: bool = True) -> str:
    """One line: the largest raw-output difference and whether the detections are the same.

    ``strict=False`` (a quantized model) reports the share of the checkpoint's detections found
    again (same label, IoU >= 0.5) instead of demanding the same ones.
    """
    exported = load(path)
    # The model as it computes, not the eager runtime's own folding of the input normalization into
    # the first convolution (detect.models.fold_input), whose float rounding is not the export's.
    reference = load(ckpt_path, image_size=exported.image_size, nms=exported.info.nms, fold_input=False)
    # Drawn shapes rather than noise: a noise image gives no detections worth comparing.
    config = ShapesConfig(image_size=exported.image_size)
    images = np.stack([reference.letterbox(render_sample(config, seed)[0])[0] for seed in range(count)])
    errors = compare_outputs(reference.runtime(images), exported.runtime(images))
    # Compared above a display threshold: the thousands of near-zero candidates an untrained model
    # keeps tie at the top-k cut-off, where float noise may pick either.
    keep = CHECK_THRESH
    ref_det = [d.select(d.scores >= keep) for d in reference.infer(images)]
    exp_det = [d.select(d.scores >= keep) for d in exported.infer(images)]
    post = exported.info.postprocess
    worst = max(errors.values())
    if not strict:
        found, total = recall_of(ref_det, exp_det)
        return (
            f"check against the checkpoint on {count} images: max output difference {worst:.1e}, "
            f"{found} of {total} detections (score >= {keep}) found again"
        )
    cutoffs = cutoff_of(ref_det, max(keep, post.score_thresh), post.max_det)
    same = all(match_detections(a, b, c, nms_iou=post.nms_iou) for a, b, c in zip(ref_det, exp_det, cutoffs))
    verdict = f"same detections (score >= {keep})" if same else "OTHER DETECTIONS"
    return f"check against the checkpoint on {count} images: max output difference {worst:.1e}, {verdict}"


def recall_of(reference: list, other: list, iou: float = 0.5) -> tuple[int, int]:
    """How many of ``reference``'s detections ``other`` has too (same label, IoU >= ``iou``)."""
    found = total = 0
    for ref, oth in zip(reference, other):
        total += len(ref)
        if len(ref) and len(oth):
            same_label = ref.labels[:, None] == oth.labels[None, :]
            found += int(((box_iou(ref.boxes, oth.boxes) >= iou) & same_label).any(dim=1).sum())
    return found, total
