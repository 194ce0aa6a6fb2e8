"""Training entry: config in, trained checkpoint, metrics and predictions out."""

from __future__ import annotations

import json
import logging
import os
import statistics
import time
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import ProgressBar
from omegaconf import DictConfig, OmegaConf, open_dict
from PIL import Image

from detect.data.images import ImageFault, read_image
from detect.data.resize import early_image_size
from detect.eval.coco import results_to_detections
from detect.eval.tables import format_metrics
from detect.inference.checkpoint import inference_size
from detect.inference.visualize import draw_detections
from detect.tasks.callbacks import EpochTimer
from detect.tasks.checkpoint import warm_start
from detect.tasks.classify import classification_task, format_accuracy, is_classifier
from detect.tasks.faults import AtomicCheckpointIO, find_last_checkpoint
from detect.tasks.module import DetectionTask
from detect.utils import in_multirun as _in_multirun

__all__ = ["build_trainer", "objective", "train", "write_outputs"]

log = logging.getLogger(__name__)


def _precision(requested: str | int | None, accelerator: str | None) -> str | int:
    """``auto``: bf16 mixed precision on a GPU, and on a CPU with native bf16 units; fp32 elsewhere.

    On CPUs without AVX512-BF16 or AMX, bf16 is emulated and slower than fp32.
    """
    if requested not in (None, "auto"):
        return requested
    if torch.cuda.is_available() and accelerator in (None, "auto", "gpu", "cuda"):
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    if torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported():
        return "bf16-mixed"
    return "32-true"


def build_trainer(cfg: DictConfig, **overrides: Any) -> L.Trainer:
    """A Trainer from ``cfg.trainer`` with the configured callbacks and loggers."""
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c is not None]
    loggers = [instantiate(c) for c in (cfg.get("logger") or {}).values() if c is not None]
    trainer_cfg = OmegaConf.to_container(cfg.trainer, resolve=True)
    trainer_cfg["precision"] = _precision(trainer_cfg.get("precision"), trainer_cfg.get("accelerator"))
    on_gpu = torch.cuda.is_available() and trainer_cfg.get("accelerator") in (None, "auto", "gpu", "cuda")
    if trainer_cfg.get("sync_batchnorm") and not on_gpu:
        # torch's SyncBatchNorm runs only on GPU modules; on CPU (gloo) each process keeps its own
        # BatchNorm statistics, as plain DDP does.
        log.info("sync_batchnorm needs GPUs: off for this CPU run")
        trainer_cfg["sync_batchnorm"] = False
    trainer_cfg.update(overrides)
    if trainer_cfg.get("enable_progress_bar") is False:
        callbacks = [c for c in callbacks if not isinstance(c, ProgressBar)]
    plugins = trainer_cfg.pop("plugins", None) or []
    if not any(hasattr(plugin, "save_checkpoint") for plugin in plugins):
        plugins = [*plugins, AtomicCheckpointIO()]
    return instantiate(trainer_cfg, callbacks=callbacks, logger=loggers or False, plugins=plugins)


def write_outputs(
    output_dir: Path,
    metrics: dict[str, float],
    results: list[dict] | None,
    extra: dict[str, Any] | None = None,
    timing: dict[str, float] | None = None,
) -> None:
    """Write ``metrics.json`` (flat keys), ``predictions.json`` (COCO results, unless None) and ``timing.json``.

    Wall times go to ``timing.json``, so that two seeded runs write identical ``metrics.json``.
    """
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "metrics.json").write_text(json.dumps({**metrics, **(extra or {})}, indent=2))
    if results is not None:
        (output_dir / "predictions.json").write_text(json.dumps(results))
    if timing:
        (output_dir / "timing.json").write_text(json.dumps(timing, indent=2))


def _model_cost(task: DetectionTask, ckpt_path: Path, image_size: int) -> tuple[dict, dict]:
    """GFLOPs of one forward (deterministic: metrics.json) and the shipped predictor's batch-1
    latency (a wall time: timing.json), for the sweep leaderboard's accuracy-against-cost chart."""
    from torch.utils.flop_counter import FlopCounterMode

    from detect.inference import load
    from detect.tasks.benchmark import time_call

    images = torch.zeros(1, 3, image_size, image_size, dtype=torch.uint8)
    model = task.model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(images)
    predictor = load(ckpt_path)
    seconds = time_call(lambda: predictor.infer(images), warmup=3, runs=10, min_seconds=0.0)
    return {"gflops": round(counter.get_total_flops() / 1e9, 3)}, {
        "predict_ms": round(1000 * statistics.median(seconds), 2)
    }


def objective(metrics: dict[str, float], name: str | None) -> float | None:
    """The value a search maximizes (``optimized_metric``); None when no search asks for one."""
    if name is None:
        return None
    if name not in metrics:
        known = ", ".join(k for k in metrics if k.count("/") == 1)
        raise ValueError(f"optimized_metric={name} is not a metric of this run (it has {known})")
    return float(metrics[name])


def _check_writable(folder: Path) -> None:
    """Fail before training, not at the first checkpoint, when outputs cannot be written."""
    probe = folder / f".write-test-{os.getpid()}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:
        raise OSError(f"output folder {folder} is not writable ({error.strerror or error})") from None


def _resume_from(cfg: DictConfig) -> str | None:
    """The checkpoint to resume: ``ckpt_path`` as given, or with ``resume=true`` / ``ckpt_path=last``
    the newest ``last.ckpt`` of this task's runs, whose folder the run then continues in."""
    ckpt_path = cfg.get("ckpt_path")
    if ckpt_path not in (None, "last"):
        if not Path(ckpt_path).is_file():
            raise FileNotFoundError(f"ckpt_path: no such checkpoint: {ckpt_path}")
        return str(ckpt_path)
    if ckpt_path is None and not cfg.get("resume"):
        return None
    output_dir = Path(cfg.paths.output_dir)
    in_sweep = _in_multirun()
    found = find_last_checkpoint(output_dir, siblings=not in_sweep)
    if found is None and in_sweep:
        # A re-submitted sweep (or a requeued SLURM job): jobs that never checkpointed start afresh.
        print(
            f"resume: no checkpoints/last.ckpt in {output_dir} yet; this sweep job starts from the beginning"
        )
        return None
    if found is None:
        raise FileNotFoundError(
            f"resume: no checkpoints/last.ckpt in {output_dir} or the other runs in {output_dir.parent} "
            "(start without resume=true, or give ckpt_path=)"
        )
    run_dir = found.parent.parent
    if run_dir != output_dir:
        with open_dict(cfg):
            cfg.paths.output_dir = str(run_dir)
    return str(found)


def _check_resumable(ckpt_path: str, config: dict[str, Any]) -> int:
    """One line instead of a state-dict mismatch when the checkpoint holds another model; its step."""
    try:
        checkpoint = torch.load(ckpt_path, map_location="cpu", weights_only=False)
    except Exception as error:  # torch.load raises many types on a damaged file
        raise OSError(
            f"cannot resume from {ckpt_path}: not a readable checkpoint ({type(error).__name__})"
        ) from None
    saved = (checkpoint.get("hyper_parameters") or {}).get("config", {}).get("model")
    if saved is not None and saved != config["model"]:
        raise ValueError(
            f"cannot resume from {ckpt_path}: it was trained with another model "
            f"(backbone {saved.get('backbone', {}).get('_target_')}, head {saved.get('head', {}).get('_target_')}); "
            "resume with the same backbone / neck / head"
        )
    return int(checkpoint.get("global_step", 0))


def _draw_samples(task: DetectionTask, datamodule: Any, output_dir: Path, count: int) -> Path:
    """Draw the saved predictions of the first ``count`` validation images."""
    folder = output_dir / "visualizations"
    folder.mkdir(parents=True, exist_ok=True)
    dataset = datamodule.val_set
    by_image: dict[int, list[dict]] = {}
    for result in task.val_results:
        by_image.setdefault(result["image_id"], []).append(result)
    drawn_ids = [image_id for image_id in dataset.image_ids if image_id in task.evaluator.seen][:count]
    for image_id in drawn_ids:
        path = dataset.image_path(image_id)
        try:
            image = read_image(path)
        except ImageFault as fault:  # named when validation skipped it
            log.debug("not drawn: %s", fault)
            continue
        detections = results_to_detections(by_image.get(image_id, []), task.categories.ids, image.shape[:2])
        drawn = draw_detections(
            image,
            detections,
            task.categories.names,
            skeleton=task.skeleton,
            keypoint_labels=task.keypoint_labels,
        )
        Image.fromarray(np.ascontiguousarray(drawn)).save(folder / path.with_suffix(".jpg").name)
    return folder


def _detection_task(cfg: DictConfig, datamodule: Any, config: dict[str, Any]) -> DetectionTask:
    if not hasattr(datamodule, "request_targets"):
        raise ValueError(
            f"data={type(datamodule).__name__} is a classification set: train it with head=classify"
        )
    task = DetectionTask(config=config, categories=datamodule.categories.to_list())
    metric = cfg.get("optimized_metric")
    if metric is not None and metric.split("/")[0] not in task.iou_types:
        # Before training, not after: a typo would otherwise cost a whole run.
        raise ValueError(
            f"optimized_metric={metric}: this head is evaluated on {', '.join(task.iou_types)} "
            f"(e.g. optimized_metric={task.iou_types[-1]}/AP)"
        )
    fields = task.model.head.target_fields
    datamodule.request_targets(masks="masks" in fields, keypoints="keypoints" in fields)
    return task


def train(cfg: DictConfig) -> dict[str, float]:
    """Train, evaluate and write checkpoint, metrics and (detectors) predictions and drawings.

    Detectors are scored with pycocotools; ``head=classify`` trains a classifier
    (:mod:`detect.tasks.classify`), scored by accuracy.

    Returns:
        The final validation metrics (flat keys such as ``bbox/AP`` or ``cls/top1``).
    """
    started = time.perf_counter()
    L.seed_everything(cfg.seed, workers=True)
    resume_path = _resume_from(cfg)
    output_dir = Path(cfg.paths.output_dir)
    _check_writable(output_dir)
    datamodule = instantiate(cfg.data)
    config = OmegaConf.to_container(cfg, resolve=True)
    classifier = is_classifier(cfg)
    task = (
        classification_task(cfg, datamodule, config)
        if classifier
        else _detection_task(cfg, datamodule, config)
    )
    task.model.check_input_size(cfg.data.image_size, cfg.data.image_size)
    if not classifier:  # what the run validates and ships at, from data.val_scale
        size = inference_size(cfg.data)
        try:
            task.model.check_input_size(size, size)
        except ValueError as error:
            raise ValueError(f"data.val_scale={cfg.data.val_scale} gives {size} px: {error}") from None
        early = getattr(datamodule, "augment", None)
        if early is not None and early.early_epochs:
            size = early_image_size(cfg.data.image_size, early.early_scale)
            try:
                task.model.check_input_size(size, size)
            except ValueError as error:
                raise ValueError(
                    f"data.augment.early_scale={early.early_scale} gives {size} px: {error}"
                ) from None
    if cfg.get("init_from"):
        report = warm_start(task.model, cfg.init_from)
        print(f"init_from {cfg.init_from}: {report.summary()}")
    if resume_path is not None:
        step = _check_resumable(resume_path, config)
        print(f"resuming from {resume_path} (step {step}); outputs go to {output_dir}")
    trainer = build_trainer(cfg)
    with warnings.catch_warnings():
        # Lightning looks for the position in the loader itself; ours is in the data module's
        # checkpointed state (detect.data.sampler.ResumableOrder), so a mid-epoch resume is exact.
        warnings.filterwarnings(
            "ignore", message=".*resuming from a checkpoint that ended before the epoch ended.*"
        )
        trainer.fit(task, datamodule=datamodule, ckpt_path=resume_path)
    ckpt_path = output_dir / "checkpoints" / "last.ckpt"
    trainer.save_checkpoint(ckpt_path)
    train_seconds = time.perf_counter() - started
    # Every rank validates (their predictions are gathered); rank 0 writes the outputs.
    trainer.validate(task, datamodule=datamodule, verbose=False)
    metrics = dict(task.val_metrics)
    if not trainer.is_global_zero:
        return metrics
    timers = [c for c in trainer.callbacks if isinstance(c, EpochTimer)]
    extra = {"params_M": round(sum(p.numel() for p in task.model.parameters()) / 1e6, 3)}
    timing = {**(timers[0].summary() if timers else {}), "train_minutes": round(train_seconds / 60, 2)}
    if classifier:
        write_outputs(output_dir, metrics, None, extra, timing)
        print(
            f"\n{format_accuracy(metrics)}\n\ntrained in {train_seconds / 60:.1f} min\n"
            f"checkpoint: {ckpt_path}  (a detector starts from it with init_from={ckpt_path})\n"
            f"metrics:    {output_dir / 'metrics.json'}"
        )
        return metrics
    if cfg.get("measure_cost", True):
        cost, latency = _model_cost(task, ckpt_path, inference_size(cfg.data))
        extra |= cost
        timing |= latency
    write_outputs(output_dir, metrics, task.val_results, extra, timing)
    drawings = _draw_samples(task, datamodule, output_dir, cfg.get("num_visualizations", 8))
    for iou_type in task.iou_types:
        print("\n" + format_metrics(metrics, iou_type))
    print(
        f"\ntrained in {train_seconds / 60:.1f} min\n"
        f"checkpoint:  {ckpt_path}\n"
        f"metrics:     {output_dir / 'metrics.json'}\n"
        f"predictions: {output_dir / 'predictions.json'}\n"
        f"drawings:    {drawings}"
    )
    return metrics
