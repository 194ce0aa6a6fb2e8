"""Speed, FLOPs and parameter counts of backbone x neck x head combinations, measured one way for all.

Method (``../shared/BENCHMARKING.md``): batch 1 inference in ``inference_mode`` after warm-up,
at least ``runs`` timed calls and ``min_seconds`` of timing, median and p90 reported; FLOPs from
``torch.utils.flop_counter`` (2 per multiply-add). Training throughput times whole optimizer steps
(forward, loss, backward, AdamW) on random images with a few boxes each.
"""

from __future__ import annotations

import csv
import itertools
import logging
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch.utils.flop_counter import FlopCounterMode

from detect.models.detector import Detector
from detect.structures import Targets

__all__ = ["benchmark", "build_model", "time_call"]

log = logging.getLogger(__name__)


def build_model(conf_dir: str, backbone: str, neck: str, head: str, num_classes: int) -> Detector:
    """Compose the model groups exactly as training does and build the detector."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=conf_dir, version_base="1.3"):
        cfg = compose("train", overrides=[f"backbone={backbone}", f"neck={neck}", f"head={head}"])
    return instantiate(cfg.model)(num_classes=num_classes)


def time_call(function: Callable[[], Any], warmup: int, runs: int, min_seconds: float) -> list[float]:
    """Seconds per call after ``warmup`` calls, for at least ``runs`` calls and ``min_seconds``."""
    for _ in range(warmup):
        function()
    times: list[float] = []
    started = time.perf_counter()
    while len(times) < runs or time.perf_counter() - started < min_seconds:
        t0 = time.perf_counter()
        function()
        times.append(time.perf_counter() - t0)
    return times


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def _inference_row(model: Detector, size: int, cfg: DictConfig, device: torch.device) -> dict[str, Any]:
    model = model.eval().to(device).to(memory_format=torch.channels_last)
    images = torch.rand(1, 3, size, size, device=device).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        with FlopCounterMode(display=False) as counter:
            model(images)
        forward = time_call(lambda: model(images), cfg.warmup, cfg.runs, cfg.min_seconds)
        predict = time_call(
            lambda: model.postprocess(model(images), [(size, size)]), cfg.warmup, cfg.runs, cfg.min_seconds
        )
    gflops = counter.get_total_flops() / 1e9
    median = statistics.median(forward)
    return {
        "gflops": round(gflops, 2),
        "forward_ms": round(median * 1e3, 1),
        "forward_p90_ms": round(_percentile(forward, 0.9) * 1e3, 1),
        "predict_ms": round(statistics.median(predict) * 1e3, 1),
        "predict_p90_ms": round(_percentile(predict, 0.9) * 1e3, 1),
        "achieved_gflops_per_s": round(gflops / median, 1),
    }


def _train_row(
    model: Detector, size: int, cfg: DictConfig, device: torch.device, bf16: bool
) -> dict[str, Any]:
    model = model.train().to(device).to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(cfg.train_batch, 3, size, size, generator=generator).to(device)
    images = images.contiguous(memory_format=torch.channels_last)
    targets = []
    for _ in range(cfg.train_batch):
        xy = torch.rand(4, 2, generator=generator) * size * 0.7
        wh = torch.rand(4, 2, generator=generator) * size * 0.25 + 8
        targets.append(
            Targets(torch.cat([xy, xy + wh], dim=1).to(device), torch.randint(0, 4, (4,)).to(device))
        )

    def step() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            losses = model.loss(model(images), targets)
        optimizer.zero_grad(set_to_none=True)
        sum(losses.values()).backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()

    times = time_call(step, max(2, cfg.warmup // 2), max(5, cfg.runs // 3), cfg.min_seconds)
    return {
        f"train_img_per_s_{'bf16' if bf16 else 'fp32'}": round(cfg.train_batch / statistics.median(times), 1)
    }


def _main_config_dir() -> str:
    from hydra.core.hydra_config import HydraConfig

    for source in HydraConfig.get().runtime.config_sources:
        if source.provider == "main" and source.schema == "file":
            return source.path
    raise ValueError("cannot find the config folder; pass conf_dir=/path/to/conf")


def benchmark(cfg: DictConfig) -> list[dict[str, Any]]:
    """Measure every combination in ``cfg``; write ``benchmark.md`` and ``benchmark.csv``."""
    torch.set_num_threads(cfg.threads)
    if cfg.device == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(cfg.device)
    conf_dir = str(Path(cfg.conf_dir or _main_config_dir()).resolve())
    rows = []
    for backbone, neck, head, size in itertools.product(cfg.backbones, cfg.necks, cfg.heads, cfg.image_sizes):
        torch.manual_seed(0)
        model = build_model(conf_dir, backbone, neck, head, cfg.num_classes)
        row: dict[str, Any] = {
            "backbone": backbone,
            "neck": neck,
            "head": head,
            "size": size,
            "params_M": round(sum(p.numel() for p in model.parameters()) / 1e6, 2),
        }
        row |= _inference_row(model, size, cfg, device)
        if cfg.train:
            for bf16 in cfg.train_precisions:
                row |= _train_row(
                    build_model(conf_dir, backbone, neck, head, cfg.num_classes), size, cfg, device, bf16
                )
        log.info("%s", row)
        print(row, flush=True)
        rows.append(row)
    output_dir = Path(cfg.paths.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    machine = (
        f"{platform.processor() or platform.machine()}, {cfg.threads} threads, torch {torch.__version__}, "
        f"device {device}" + (f" ({torch.cuda.get_device_name()})" if device.type == "cuda" else "")
    )
    columns = list(rows[0]) if rows else []
    with open(output_dir / "benchmark.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    lines = [f"Machine: {machine}", "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(row.get(c, "")) for c in columns) + " |" for row in rows]
    (output_dir / "benchmark.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return rows
