"""PNG charts of benchmark rows: latency against GFLOPs, and accuracy against latency."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

__all__ = ["accuracy_chart", "pyplot", "save_figure", "speed_chart"]

log = logging.getLogger(__name__)


def pyplot() -> Any:
    """matplotlib's pyplot on the Agg backend, or ``None`` (with a warning) when it is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log.warning("matplotlib is not installed (pip install 'detect[plot]'): no chart written")
        return None
    return plt


def save_figure(figure: Any, path: Path, dpi: int = 110) -> Path:
    """Lay out, write and close a figure."""
    import matplotlib.pyplot as plt

    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=dpi)
    plt.close(figure)
    return path


def speed_chart(rows: list[dict[str, Any]], path: Path) -> Path | None:
    """Predict latency against GFLOPs, one marker per backbone x neck, one panel per image size."""
    plt = pyplot()
    if plt is None or not rows:
        return None
    sizes = sorted({row["size"] for row in rows})
    figure, axes = plt.subplots(1, len(sizes), figsize=(7 * len(sizes), 6), squeeze=False)
    for axis, size in zip(axes[0], sizes):
        for neck, marker in zip(sorted({row["neck"] for row in rows}), "os^Dv"):
            chosen = [row for row in rows if row["size"] == size and row["neck"] == neck]
            axis.scatter(
                [row["gflops"] for row in chosen],
                [row["predict_ms"] for row in chosen],
                marker=marker,
                label=neck,
            )
            for row in chosen:
                axis.annotate(row["backbone"], (row["gflops"], row["predict_ms"]), fontsize=7, alpha=0.8)
        axis.set(xscale="log", yscale="log", xlabel="GFLOPs", ylabel="predict latency, batch 1 (ms)")
        axis.set_title(f"{size} px")
        axis.grid(True, which="both", alpha=0.3)
        axis.legend(title="neck")
    return save_figure(figure, path)


def accuracy_chart(
    rows: list[dict[str, Any]], sweep_rows: list[dict[str, Any]], path: Path, metric: str = "bbox/AP"
) -> Path | None:
    """Accuracy of each sweep job (its ``metrics.json``) against the benchmarked latency of its model.

    Jobs are matched to benchmark rows by backbone, neck and head; the latency is the one at the
    largest benchmarked size not above the job's training size (the smallest size otherwise).
    """
    plt = pyplot()
    points = []
    for job in sweep_rows:
        choices = job.get("choices") or {}
        key = (choices.get("backbone"), choices.get("neck"), choices.get("head", "detect"))
        candidates = [row for row in rows if (row["backbone"], row["neck"], row["head"]) == key]
        if metric not in job or not candidates:
            log.info("job %s (%s) has no %s or no benchmark row; left off the chart", job["job"], key, metric)
            continue
        trained = job.get("image_size") or 320
        fitting = [row for row in candidates if row["size"] <= trained]
        row = max(fitting, key=_size) if fitting else min(candidates, key=_size)
        points.append((row["predict_ms"], job[metric], f"{key[0]}/{key[1]}"))
    if plt is None or not points:
        return None
    figure, axis = plt.subplots(figsize=(7, 6))
    axis.scatter([p[0] for p in points], [p[1] for p in points])
    for x, y, label in points:
        axis.annotate(label, (x, y), fontsize=8)
    axis.set(xscale="log", xlabel="predict latency, batch 1 (ms)", ylabel=metric)
    axis.grid(True, which="both", alpha=0.3)
    return save_figure(figure, path)


def _size(row: dict[str, Any]) -> int:
    return row["size"]
