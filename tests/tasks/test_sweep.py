"""The sweep table, the leaderboard and the learning-rate schedule."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from detect.eval import collect_sweep, format_metrics, format_sweep
from detect.eval.leaderboard import pareto_front
from detect.tasks.schedules import WarmupCosineFactor
from tests.conftest import REPO


def test_sweep_table_ranks_jobs(tmp_path: Path) -> None:
    for job, ap, backbone in ((0, 0.2, "resnet18"), (1, 0.4, "vit_t")):
        folder = tmp_path / str(job)
        (folder / ".hydra").mkdir(parents=True)
        (folder / ".hydra" / "overrides.yaml").write_text(f"- backbone={backbone}\n- trainer.max_epochs=1\n")
        (folder / "metrics.json").write_text(
            json.dumps({"bbox/AP": ap, "bbox/AP50": ap + 0.2, "bbox/AP75": ap})
        )
    rows = collect_sweep(tmp_path)
    table = format_sweep(rows).splitlines()
    assert len(table) == 6 and table[-1] == "All jobs: trainer.max_epochs=1"
    assert "backbone=vit_t" in table[2] and "0.400" in table[2] and "max_epochs" not in table[2]
    assert "backbone=resnet18" in table[3]


def test_metrics_table_lists_classes() -> None:
    text = format_metrics({"bbox/AP": 0.5, "bbox/AP/cat": 0.25, "bbox/AP/dog": float("nan")})
    assert "0.500" in text and "| cat " in text and "0.250" in text and "dog" not in text


def test_warmup_cosine_shape() -> None:
    factor = WarmupCosineFactor(total_steps=100, warmup_steps=10, min_ratio=0.1, warmup_start=0.0)
    assert factor(0) == 0.0 and factor(5) == pytest.approx(0.5) and factor(10) == pytest.approx(1.0)
    assert factor(55) == pytest.approx(0.55, abs=0.01) and factor(100) == pytest.approx(0.1)
    assert all(factor(s) >= factor(s + 1) for s in range(10, 100))


def _job(sweep: Path, job: int, backbone: str, neck: str, metrics: dict | None, timing: dict | None) -> None:
    folder = sweep / str(job)
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "overrides.yaml").write_text(f"- backbone={backbone}\n- neck={neck}\n- seed=3\n")
    (folder / ".hydra" / "hydra.yaml").write_text(
        f"hydra:\n  runtime:\n    choices:\n      backbone: {backbone}\n      neck: {neck}\n      head: detect\n"
    )
    if metrics is not None:
        (folder / "metrics.json").write_text(json.dumps(metrics))
    if timing is not None:
        (folder / "timing.json").write_text(json.dumps(timing))


def test_pareto_front_keeps_what_nothing_beats() -> None:
    # (cost, score): 1 is beaten by 0 (cheaper and better); 3 ties 2 on cost and loses on score.
    points = [(1.0, 0.5), (2.0, 0.4), (3.0, 0.7), (3.0, 0.6), (5.0, 0.8)]
    assert pareto_front(points) == [0, 2, 4]


def test_leaderboard_of_a_partial_sweep(tmp_path: Path) -> None:
    sweep = tmp_path / "multirun"
    for job, (backbone, neck, ap, ms, params) in enumerate(
        [
            ("resnet18", "fpn", 0.31, 40.0, 11.5),
            ("cspdarknet_n", "pan", 0.42, 25.0, 3.0),
            ("vit_t", "fpn", 0.29, 60.0, 6.0),
        ]
    ):
        metrics = {
            "bbox/AP": ap,
            "bbox/AP50": ap + 0.2,
            "bbox/APs": ap / 2,
            "params_M": params,
            "gflops": 2.5,
        }
        _job(sweep, job, backbone, neck, metrics, {"predict_ms": ms, "train_minutes": 3.0})
    _job(sweep, 3, "resnet34", "pan", None, None)  # still running, or killed
    result = subprocess.run(
        [sys.executable, str(REPO / "tools" / "leaderboard.py"), str(sweep)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert "3 finished, 1 unfinished" in result.stdout
    lines = (sweep / "results.md").read_text().splitlines()
    ranked = [line for line in lines if line.startswith("| ") and line[2].isdigit()]
    assert [line.split("|")[3].strip() for line in ranked] == [
        "cspdarknet_n",
        "resnet18",
        "vit_t",
        "resnet34",
    ]
    assert "[1](1/)" in ranked[0] and "0.420" in ranked[0] and "25" in ranked[0]
    assert "(unfinished)" in ranked[3] and "All jobs: `seed=3`" in "\n".join(lines)
    with (sweep / "results.csv").open() as file:
        rows = list(csv.DictReader(file))
    assert [row["job"] for row in rows] == ["1", "0", "2", "3"]
    assert (
        rows[0]["predict_ms"] == "25.0" and rows[0]["gflops"] == "2.5" and rows[3]["status"] == "unfinished"
    )
    assert (sweep / "pareto.png").stat().st_size > 10_000
    empty = tmp_path / "empty"
    empty.mkdir()
    result = subprocess.run(
        [sys.executable, str(REPO / "tools" / "leaderboard.py"), str(empty)], capture_output=True, text=True
    )
    assert (
        result.returncode == 1
        and "holds no job folders" in result.stderr
        and "Traceback" not in result.stderr
    )
