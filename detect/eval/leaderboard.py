"""A sweep's leaderboard: ``results.md``, ``results.csv`` and a Pareto chart, from its job folders.

Works on finished and partial sweeps alike: a job folder (one with ``.hydra/``) without a
``metrics.json`` yet is listed as unfinished, so a pre-empted sweep still shows what it has.
"""

from __future__ import annotations

import csv
import logging
import math
from pathlib import Path
from typing import Any

from detect.eval.tables import collect_sweep, job_config, job_overrides

__all__ = ["COLUMNS", "build_leaderboard", "pareto_front"]

log = logging.getLogger(__name__)

# (column, key in a job's row); metrics come from metrics.json, times from timing.json.
COLUMNS: tuple[tuple[str, str], ...] = (
    ("AP", "bbox/AP"),
    ("AP50", "bbox/AP50"),
    ("APs", "bbox/APs"),
    ("APm", "bbox/APm"),
    ("APl", "bbox/APl"),
    ("mask AP", "segm/AP"),
    ("kp AP", "keypoints/AP"),
    ("params M", "params_M"),
    ("GFLOPs", "gflops"),
    ("predict ms", "predict_ms"),
    ("train min", "train_minutes"),
)


def _number(value: Any) -> float | None:
    return value if isinstance(value, (int, float)) and not math.isnan(value) else None


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats: lower cost (x) and higher score (y) at once."""
    front = []
    for i, (x, y) in enumerate(points):
        beaten = any(
            (ox <= x and oy >= y) and (ox < x or oy > y) for j, (ox, oy) in enumerate(points) if j != i
        )
        if not beaten:
            front.append(i)
    return sorted(front, key=lambda i: points[i][0])


def _rows(sweep_dir: Path) -> list[dict[str, Any]]:
    rows = collect_sweep(sweep_dir)
    finished = {row["folder"] for row in rows}
    for hydra_dir in sorted(sweep_dir.glob("**/.hydra")):
        job_dir = hydra_dir.parent
        if job_dir == sweep_dir or str(job_dir) in finished:
            continue
        error = job_dir / "error.txt"  # written by a sweep job that failed (detect.utils.run_cli)
        rows.append(
            {
                "job": job_dir.name,
                "folder": str(job_dir),
                "overrides": " ".join(job_overrides(job_dir)),
                **job_config(job_dir),
                "status": "failed" if error.is_file() else "unfinished",
                "error": error.read_text().strip() if error.is_file() else "",
            }
        )
    for row in rows:
        row.setdefault("status", "done")
        choices = row.get("choices") or {}
        for group in ("backbone", "neck", "head", "data"):
            row.setdefault(group, choices.get(group, ""))
    return sorted(rows, key=lambda row: -(_number(row.get("bbox/AP")) or -1.0))


def _markdown(rows: list[dict[str, Any]], sweep_dir: Path, chart: Path | None) -> str:
    columns = [(name, key) for name, key in COLUMNS if any(_number(row.get(key)) is not None for row in rows)]
    shared = set.intersection(*(set(row["overrides"].split()) for row in rows)) if rows else set()
    header = (
        "| # | job | backbone | neck | head | overrides | " + " | ".join(name for name, _ in columns) + " |"
    )
    lines = [f"# Leaderboard: {sweep_dir}", "", header, "|---" * (6 + len(columns)) + "|"]
    for rank, row in enumerate(rows, 1):
        folder = Path(row["folder"])
        link = (
            f"[{row['job']}]({folder.relative_to(sweep_dir).as_posix()}/)"
            if folder.is_relative_to(sweep_dir)
            else row["job"]
        )
        varying = " ".join(item for item in row["overrides"].split() if item not in shared) or "-"
        cells = []
        for _, key in columns:
            value = _number(row.get(key))
            cells.append(
                "-" if value is None or value < 0 else f"{value:.3f}" if key.count("/") else f"{value:g}"
            )
        status = {"done": "", "failed": f" (failed: {row.get('error', '')})"}.get(
            row["status"], " (unfinished)"
        )
        lines.append(
            f"| {rank} | {link}{status} | {row['backbone']} | {row['neck']} | {row['head']} | {varying} | "
            + " | ".join(cells)
            + " |"
        )
    if shared:
        lines += ["", f"All jobs: `{' '.join(sorted(shared))}`"]
    if chart is not None:
        lines += ["", f"![AP against latency and parameters]({chart.name})"]
    return "\n".join(lines) + "\n"


def _chart(rows: list[dict[str, Any]], path: Path) -> Path | None:
    from detect.tasks.charts import pyplot, save_figure

    plt = pyplot()
    done = [row for row in rows if _number(row.get("bbox/AP")) is not None]
    if plt is None or not done:
        return None
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    figure, axes = plt.subplots(1, 2, figsize=(13, 5.5))
    for axis, (key, label) in zip(
        axes, (("predict_ms", "predict latency, batch 1 (ms)"), ("params_M", "parameters (M)"))
    ):
        usable = [row for row in done if _number(row.get(key))]
        points = [(row[key], row["bbox/AP"]) for row in usable]
        if not points:
            axis.set_title(f"no {key} recorded")
            continue
        axis.scatter([p[0] for p in points], [p[1] for p in points], color="tab:blue")
        front = pareto_front(points)
        axis.plot(
            [points[i][0] for i in front],
            [points[i][1] for i in front],
            "-o",
            color="tab:red",
            label="Pareto front",
        )
        for row, (x, y) in zip(usable, points):
            axis.annotate(f"{row['job']}: {row['backbone']}/{row['neck']}", (x, y), fontsize=7)
        xs = [p[0] for p in points]
        # A log axis when the costs span a decade or more; over a narrow range it has no major
        # tick to label (and labels its minor ticks on top of each other).
        wide = min(xs) > 0 and max(xs) / min(xs) >= 10
        axis.set(xscale="log" if wide else "linear", xlabel=label, ylabel="bbox AP")
        if wide:
            axis.xaxis.set_major_formatter(ScalarFormatter())
            axis.xaxis.set_minor_formatter(NullFormatter())
        axis.grid(True, which="both", alpha=0.3)
        axis.legend()
    return save_figure(figure, path)


def build_leaderboard(sweep_dir: str | Path) -> list[dict[str, Any]]:
    """Write ``results.md``, ``results.csv`` and ``pareto.png`` into ``sweep_dir``; return the rows, best first."""
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise FileNotFoundError(f"no such sweep folder: {sweep_dir}")
    rows = _rows(sweep_dir)
    if not rows:
        raise ValueError(f"{sweep_dir} holds no job folders (folders with .hydra/ or metrics.json)")
    chart = _chart(rows, sweep_dir / "pareto.png")
    (sweep_dir / "results.md").write_text(_markdown(rows, sweep_dir, chart))
    fields = [
        "rank",
        "job",
        "status",
        "error",
        "folder",
        "backbone",
        "neck",
        "head",
        "image_size",
        "overrides",
    ]
    fields += [key for _, key in COLUMNS]
    with (sweep_dir / "results.csv").open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        for rank, row in enumerate(rows, 1):
            writer.writerow({**row, "rank": rank})
    return rows
