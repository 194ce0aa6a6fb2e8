"""Export entry: a checkpoint in, an ONNX / TorchScript / OpenVINO file out, checked against eager."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from omegaconf import DictConfig

from detect.data.synthetic import ShapesConfig, render_sample
from detect.export import export_model
from detect.export.parity import compare_outputs, cutoff_of, match_detections
from detect.inference import load

__all__ = ["export"]

log = logging.getLogger(__name__)

CHECK_THRESH = 0.05


def export(cfg: DictConfig) -> Path:
    """Write ``cfg.ckpt_path`` as ``cfg.format``; with ``cfg.check``, compare it with the checkpoint."""
    path = export_model(cfg.ckpt_path, cfg.format, cfg.output, nms=cfg.nms, image_size=cfg.image_size)
    size_mb = sum(p.stat().st_size for p in path.parent.glob(path.stem + ".*")) / 2**20
    print(f"exported {path} ({size_mb:.1f} MB)")
    if cfg.check:
        report = check_export(cfg.ckpt_path, path)
        print(report)
    return path


def check_export(ckpt_path: str | Path, path: Path, count: int = 2) -> str:
    """One line: the largest raw-output difference and whether the detections are the same."""
    exported = load(path)
    reference = load(ckpt_path, image_size=exported.image_size, nms=exported.info.nms)
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
    cutoffs = cutoff_of(ref_det, max(keep, post.score_thresh), post.max_det)
    same = all(match_detections(a, b, c) for a, b, c in zip(ref_det, exp_det, cutoffs))
    worst = max(errors.values())
    verdict = f"same detections (score >= {keep})" if same else "OTHER DETECTIONS"
    return f"check against the checkpoint on {count} images: max output difference {worst:.1e}, {verdict}"
