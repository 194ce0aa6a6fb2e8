"""Speed, FLOPs and parameter counts of backbone x neck x head combinations, measured one way for all.

Method (``../shared/BENCHMARKING.md``): batch 1 inference in ``inference_mode`` after warm-up,
Conv+BN folded where a BatchNorm follows its conv in a Sequential,
at least ``runs`` timed calls and ``min_seconds`` of timing, median and p90 reported, for the
network alone (forward) and for the whole predict path (forward, decoding, NMS); on a GPU also
under bf16 autocast. FLOPs from ``torch.utils.flop_counter`` (2 per multiply-add). Peak memory of
one predict call: ``torch.cuda.max_memory_allocated`` on a GPU, on a CPU the peak of live
parameters, buffers and activations traced by torch's ``MemTracker``. Training throughput times
whole optimizer steps (forward, loss, backward, AdamW) on random images with a few boxes each.
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

from detect.eval.tables import collect_sweep
from detect.models.detector import Detector
from detect.models.fuse import fuse_conv_bn
from detect.structures import Targets
from detect.tasks.charts import accuracy_chart, speed_chart

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


def _synchronized(function: Callable[[], Any], device: torch.device) -> Callable[[], Any]:
    if device.type != "cuda":
        return function

    def call() -> Any:
        result = function()
        torch.cuda.synchronize()
        return result

    return call


def peak_memory_mb(function: Callable[[], Any], model: torch.nn.Module, device: torch.device) -> float | None:
    """Peak memory of one call of ``function`` in MiB (parameters included); None if it cannot be traced."""
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        function()
        torch.cuda.synchronize()
        return round(torch.cuda.max_memory_allocated() / 2**20, 1)
    try:  # a private torch tool: if a release moves it, the column is left empty rather than wrong
        from torch.distributed._tools.mem_tracker import MemTracker

        # The tracker hooks every parameter's gradient, which frozen parameters refuse.
        frozen = [param for param in model.parameters() if not param.requires_grad]
        for param in frozen:
            param.requires_grad_(True)
        try:
            tracker = MemTracker()
            tracker.track_external(model)
            with tracker:
                function()
        finally:
            for param in frozen:
                param.requires_grad_(False)
        peak = tracker.get_tracker_snapshot("peak")
        return round(sum(per_device["Total"] for per_device in peak.values()) / 2**20, 1)
    except Exception as error:  # noqa: BLE001 - any failure only means "not measured"
        log.warning("peak memory not measured: %s", error)
        return None


def _timings(prefix: str, forward: list[float], predict: list[float]) -> dict[str, float]:
    return {
        f"{prefix}forward_ms": round(statistics.median(forward) * 1e3, 1),
        f"{prefix}forward_p90_ms": round(_percentile(forward, 0.9) * 1e3, 1),
        f"{prefix}predict_ms": round(statistics.median(predict) * 1e3, 1),
        f"{prefix}predict_p90_ms": round(_percentile(predict, 0.9) * 1e3, 1),
    }


def _amp_enabled(amp: str | bool, device: torch.device) -> bool:
    """``auto``: bf16 autocast timings on a GPU only; ``true``/``false`` force them on or off."""
    if amp == "auto":
        return device.type == "cuda"
    return bool(amp)


def _inference_row(model: Detector, size: int, cfg: DictConfig, device: torch.device) -> dict[str, Any]:
    model = model.eval()
    if cfg.get("fuse", True):
        fuse_conv_bn(model)
    model = model.to(device).to(memory_format=torch.channels_last)
    batch = int(cfg.get("batch", 1))
    images = torch.rand(batch, 3, size, size, device=device).contiguous(memory_format=torch.channels_last)
    row: dict[str, Any] = {}
    with torch.inference_mode():
        with FlopCounterMode(display=False) as counter:
            model(images)
        forward_call = _synchronized(lambda: model(images), device)
        predict_call = _synchronized(lambda: model.postprocess(model(images), [(size, size)] * batch), device)
        forward = time_call(forward_call, cfg.warmup, cfg.runs, cfg.min_seconds)
        predict = time_call(predict_call, cfg.warmup, cfg.runs, cfg.min_seconds)
        gflops = counter.get_total_flops() / 1e9
        row["gflops"] = round(gflops, 2)
        row |= _timings("", forward, predict)
        row["achieved_gflops_per_s"] = round(gflops / statistics.median(forward), 1)
        row["peak_mem_MB"] = peak_memory_mb(predict_call, model, device)
        if _amp_enabled(cfg.get("amp", "auto"), device):
            with torch.autocast(device.type, dtype=torch.bfloat16):
                forward = time_call(forward_call, cfg.warmup, cfg.runs, cfg.min_seconds)
                predict = time_call(predict_call, cfg.warmup, cfg.runs, cfg.min_seconds)
            row |= _timings("amp_", forward, predict)
    return row


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
    """Measure every combination in ``cfg``; write ``benchmark.md``, ``benchmark.csv`` and charts."""
    torch.set_num_threads(cfg.threads)
    if cfg.device == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(cfg.device)
    conf_dir = str(Path(cfg.conf_dir or _main_config_dir()).resolve())
    output_dir = Path(cfg.paths.output_dir)
    machine = machine_line(device, cfg.threads)
    combinations = list(itertools.product(cfg.backbones, cfg.necks, cfg.heads, cfg.image_sizes))
    total = len(combinations)
    rows: list[dict[str, Any]] = []
    for backbone, neck, head, size in combinations:
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
        rows.append(row)
        print(f"[{len(rows)}/{total}] {row}", flush=True)
        # Written after every row, so a long run that is stopped keeps what it measured.
        write_tables(rows, output_dir, machine, quiet=True)
    write_tables(rows, output_dir, machine)
    chart = speed_chart(rows, output_dir / "benchmark.png")
    if chart:
        print(f"chart: {chart}")
    if cfg.get("sweep_dir"):
        chart = accuracy_chart(rows, collect_sweep(cfg.sweep_dir), output_dir / "accuracy_latency.png")
        if chart:
            print(f"accuracy vs latency: {chart}")
    return rows


def machine_line(device: torch.device, threads: int) -> str:
    """What the numbers were measured on: CPU model, threads, torch version and device."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = f" ({torch.cuda.get_device_name()})" if device.type == "cuda" else ""
    return f"{cpu}, {threads} threads, torch {torch.__version__}, device {device}{gpu}"


def write_tables(rows: list[dict[str, Any]], output_dir: Path, machine: str, quiet: bool = False) -> None:
    """``benchmark.csv`` and ``benchmark.md`` (with the machine line) in ``output_dir``; prints the table."""
    output_dir.mkdir(parents=True, exist_ok=True)
    columns = list(dict.fromkeys(key for row in rows for key in row))
    with open(output_dir / "benchmark.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    lines = [f"Machine: {machine}", "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(row.get(c)) for c in columns) + " |" for row in rows]
    (output_dir / "benchmark.md").write_text("\n".join(lines) + "\n")
    if not quiet:
        print("\n".join(lines))


def _cell(value: Any) -> str:
    return "" if value is None else str(value)
