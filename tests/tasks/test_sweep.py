"""The sweep table and the learning-rate schedule."""

import json
from pathlib import Path

import pytest

from detect.eval import collect_sweep, format_metrics, format_sweep
from detect.tasks.schedules import WarmupCosineFactor


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
