"""Plain-text tables of metrics: one run's summary and a sweep's comparison."""

from __future__ import annotations

import json
import math
from pathlib import Path

import yaml

__all__ = ["collect_sweep", "format_metrics", "format_sweep", "job_config", "job_overrides"]

_SUMMARY_KEYS = ("AP", "AP50", "AP75", "APs", "APm", "APl")


def _fmt(value: float) -> str:
    if value is None or math.isnan(value) or value < 0:  # -1: no ground truth in that range
        return "  -  "
    return f"{value:.3f}"


def format_metrics(metrics: dict[str, float], iou_type: str = "bbox") -> str:
    """A markdown table of the summary metrics, then one of per-class AP."""
    keys = [key for key in _SUMMARY_KEYS if f"{iou_type}/{key}" in metrics]
    header = "| " + " | ".join(keys) + " |"
    rule = "|" + "---|" * len(keys)
    row = "| " + " | ".join(_fmt(metrics.get(f"{iou_type}/{key}")) for key in keys) + " |"
    lines = [f"{iou_type}:", header, rule, row]
    prefix = f"{iou_type}/AP/"
    # Classes without ground truth in the evaluated images (NaN) are left out.
    per_class = {
        key[len(prefix) :]: value
        for key, value in metrics.items()
        if key.startswith(prefix) and not math.isnan(value)
    }
    if per_class:
        width = max(len(name) for name in per_class)
        lines += ["", f"| {'class'.ljust(width)} | AP    |", f"|{'-' * (width + 2)}|-------|"]
        lines += [f"| {name.ljust(width)} | {_fmt(value)} |" for name, value in per_class.items()]
    return "\n".join(lines)


def collect_sweep(sweep_dir: str | Path) -> list[dict]:
    """Read every ``metrics.json`` below ``sweep_dir`` with the overrides of its job."""
    rows = []
    for metrics_file in sorted(Path(sweep_dir).glob("**/metrics.json")):
        job_dir = metrics_file.parent
        rows.append(
            {
                "job": job_dir.name,
                "folder": str(job_dir),
                "overrides": " ".join(job_overrides(job_dir)),
                **job_config(job_dir),
                **json.loads(metrics_file.read_text()),
                **_timing(job_dir),
            }
        )
    return rows


def job_overrides(job_dir: Path) -> list[str]:
    """The command-line overrides a Hydra job ran with (``.hydra/overrides.yaml``)."""
    overrides_file = job_dir / ".hydra" / "overrides.yaml"
    if not overrides_file.is_file():
        return []
    return [
        line.removeprefix("- ").strip()
        for line in overrides_file.read_text().splitlines()
        if line.startswith("- ")
    ]


def _timing(job_dir: Path) -> dict:
    """The job's wall times (``train_minutes`` ...), kept out of ``metrics.json`` so that it is reproducible."""
    timing_file = job_dir / "timing.json"
    return json.loads(timing_file.read_text()) if timing_file.is_file() else {}


def job_config(job_dir: Path) -> dict:
    """The group choices (``backbone``, ``neck``, ``head`` ...) and image size a Hydra job ran with."""
    found: dict = {}
    hydra_file = job_dir / ".hydra" / "hydra.yaml"
    if hydra_file.is_file():
        choices = (yaml.safe_load(hydra_file.read_text()) or {}).get("hydra", {}).get("runtime", {})
        found["choices"] = {key: str(value) for key, value in (choices.get("choices") or {}).items()}
    config_file = job_dir / ".hydra" / "config.yaml"
    if config_file.is_file():
        size = ((yaml.safe_load(config_file.read_text()) or {}).get("data") or {}).get("image_size")
        if isinstance(size, int):
            found["image_size"] = size
    return found


def format_sweep(rows: list[dict], keys: tuple[str, ...] = ("bbox/AP", "bbox/AP50", "bbox/AP75")) -> str:
    """A markdown table with a row per job, best first by the first key."""
    extra = [key for key in ("train_minutes", "params_M") if any(key in row for row in rows)]
    columns = list(keys) + extra
    rows = sorted(rows, key=lambda row: -(row.get(keys[0]) or 0.0))
    # Overrides shared by every job say nothing about the differences: show them once, not per row.
    shared = set.intersection(*(set(row["overrides"].split()) for row in rows)) if rows else set()
    lines = ["| job | overrides | " + " | ".join(columns) + " |", "|---|---|" + "---|" * len(columns)]
    for row in rows:
        values = " | ".join(_fmt(row.get(column)) for column in columns)
        varying = " ".join(item for item in row["overrides"].split() if item not in shared)
        lines.append(f"| {row['job']} | {varying} | {values} |")
    if shared:
        lines.append(f"\nAll jobs: {' '.join(sorted(shared))}")
    return "\n".join(lines)
