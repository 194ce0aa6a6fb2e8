"""Finding and reading training runs and sweeps on disk, for the web app. Read-only: nothing here writes."""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from detect.eval.tables import job_config, job_overrides

__all__ = ["Run", "Sweep", "find_runs", "find_sweeps", "read_curves", "resolve_inside"]


@dataclass
class Run:
    """A training run's folder (one with ``.hydra/`` or ``metrics.json``) and what it says of itself."""

    id: str  # the folder relative to its root, with the root's index: "0/train/2026-12-04_18-44-26"
    path: Path
    backbone: str = ""
    neck: str = ""
    head: str = ""
    data: str = ""
    image_size: int | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    timing: dict[str, float] = field(default_factory=dict)
    overrides: list[str] = field(default_factory=list)
    date: str = ""

    @property
    def ap(self) -> float | None:
        value = self.metrics.get("bbox/AP")
        return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)

    @property
    def finished(self) -> bool:
        return bool(self.metrics)

    def per_class(self) -> list[dict[str, Any]]:
        """Rows of class name and AP per IoU type (bbox, segm, keypoints)."""
        rows: dict[str, dict[str, Any]] = {}
        for key, value in self.metrics.items():
            parts = key.split("/")
            if len(parts) == 3 and parts[1] == "AP":
                rows.setdefault(parts[2], {"name": parts[2]})[parts[0]] = value
        return list(rows.values())

    def config_text(self) -> str:
        config = self.path / ".hydra" / "config.yaml"
        return config.read_text() if config.is_file() else ""

    def drawings(self) -> list[Path]:
        return sorted((self.path / "visualizations").glob("*.jpg"))[:24]

    def checkpoint(self) -> Path | None:
        for name in ("best.ckpt", "last.ckpt"):
            path = self.path / "checkpoints" / name
            if path.is_file():
                return path
        return None

    def val_images(self) -> tuple[Path | None, list[str]]:
        """The validation image folder from the run's config, and up to 24 of its files."""
        config = self.path / ".hydra" / "config.yaml"
        if not config.is_file():
            return None, []
        data = (yaml.safe_load(config.read_text()) or {}).get("data") or {}
        folder = data.get("val_images")
        if not folder or not Path(folder).is_dir():
            return None, []
        names = sorted(
            p.name for p in Path(folder).iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png")
        )
        return Path(folder), names[:24]


@dataclass
class Sweep:
    """A multirun folder with a leaderboard (``results.csv``)."""

    id: str
    path: Path
    rows: list[dict[str, str]]
    date: str


def _date(path: Path) -> str:
    return datetime.fromtimestamp(path.stat().st_mtime).strftime("%Y-%m-%d %H:%M")


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, json.JSONDecodeError):
        return {}


def _run(root_index: int, root: Path, folder: Path) -> Run:
    choices = job_config(folder).get("choices", {})
    return Run(
        id=f"{root_index}/{folder.relative_to(root).as_posix()}",
        path=folder,
        backbone=choices.get("backbone", ""),
        neck=choices.get("neck", ""),
        head=choices.get("head", ""),
        data=choices.get("data", ""),
        image_size=job_config(folder).get("image_size"),
        metrics=_read_json(folder / "metrics.json"),
        timing=_read_json(folder / "timing.json"),
        overrides=job_overrides(folder),
        date=_date(folder),
    )


def find_runs(roots: list[Path]) -> list[Run]:
    """Every training run below ``roots``, newest first."""
    runs = []
    for index, root in enumerate(roots):
        if not root.is_dir():
            continue
        folders = {p.parent.parent for p in root.glob("**/.hydra/config.yaml")}
        folders |= {p.parent for p in root.glob("**/metrics.json")}
        for folder in folders:
            config = folder / ".hydra" / "config.yaml"
            task = (
                (yaml.safe_load(config.read_text()) or {}).get("task_name") if config.is_file() else "train"
            )
            if task == "train":
                runs.append(_run(index, root, folder))
    return sorted(runs, key=lambda run: run.path.stat().st_mtime, reverse=True)


def find_sweeps(roots: list[Path]) -> list[Sweep]:
    """Every sweep below ``roots`` whose leaderboard was written, newest first."""
    sweeps = []
    for index, root in enumerate(roots):
        if not root.is_dir():
            continue
        for table in root.glob("**/results.csv"):
            with table.open() as file:
                rows = list(csv.DictReader(file))
            sweeps.append(
                Sweep(
                    f"{index}/{table.parent.relative_to(root).as_posix()}", table.parent, rows, _date(table)
                )
            )
    return sorted(sweeps, key=lambda sweep: sweep.path.stat().st_mtime, reverse=True)


def resolve_inside(roots: list[Path], run_id: str) -> Path | None:
    """The folder an id names, or None when it does not exist or leaves its root."""
    index, _, relative = run_id.partition("/")
    if not index.isdigit() or int(index) >= len(roots):
        return None
    root = roots[int(index)].resolve()
    path = (root / relative).resolve()
    return path if path.is_dir() and path.is_relative_to(root) else None


def read_curves(folder: Path) -> dict[str, list[tuple[float, float]]]:
    """Each logged series of the run's CSV log as (step, value) pairs (Lightning's ``metrics.csv``)."""
    series: dict[str, list[tuple[float, float]]] = {}
    for log in sorted(folder.glob("csv/version_*/metrics.csv")):
        with log.open() as file:
            for row in csv.DictReader(file):
                step = row.get("step")
                for key, value in row.items():
                    if key in ("step", "epoch") or not value or not step:
                        continue
                    try:
                        series.setdefault(key, []).append((float(step), float(value)))
                    except ValueError:
                        continue
    return series
