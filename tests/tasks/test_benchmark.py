"""tools/benchmark.py: the table, CSV and charts, measured for real on tiny models."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml
from omegaconf import open_dict

from detect.eval import collect_sweep
from detect.tasks.benchmark import benchmark
from detect.tasks.charts import accuracy_chart
from tests.conftest import CONF_DIR, compose_config


@pytest.fixture()
def bench_cfg(tmp_path: Path):
    cfg = compose_config(
        [
            "backbones=[cspdarknet_n]",
            "necks=[pan,bifpn]",
            "image_sizes=[64]",
            "warmup=1",
            "runs=3",
            "min_seconds=0",
            "threads=2",
        ],
        config_name="benchmark",
    )
    with open_dict(cfg):
        cfg.paths.output_dir = str(tmp_path / "bench")
        cfg.conf_dir = str(CONF_DIR)
    return cfg


def test_benchmark_writes_table_csv_and_chart(bench_cfg) -> None:
    rows = benchmark(bench_cfg)
    assert [(row["backbone"], row["neck"]) for row in rows] == [
        ("cspdarknet_n", "pan"),
        ("cspdarknet_n", "bifpn"),
    ]
    for row in rows:
        assert row["params_M"] > 1.0 and row["gflops"] > 0
        assert 0 < row["forward_ms"] <= row["forward_p90_ms"]
        assert 0 < row["predict_ms"] <= row["predict_p90_ms"]
        # Peak memory holds at least the fp32 parameters.
        assert row["peak_mem_MB"] >= row["params_M"] * 4 * 1e6 / 2**20
    out = Path(bench_cfg.paths.output_dir)
    table = (out / "benchmark.md").read_text()
    assert table.startswith("Machine: ") and "| cspdarknet_n | bifpn |" in table
    with open(out / "benchmark.csv") as handle:
        assert len(list(csv.DictReader(handle))) == 2
    assert (out / "benchmark.png").stat().st_size > 1000


def test_benchmark_batch_and_bf16_columns(bench_cfg) -> None:
    bench_cfg.necks = ["pan"]
    bench_cfg.batch = 2
    bench_cfg.amp = True
    (row,) = benchmark(bench_cfg)
    assert row["amp_forward_ms"] > 0 and row["amp_predict_ms"] > 0


def _fake_job(root: Path, name: str, backbone: str, neck: str, ap: float) -> None:
    job = root / name
    (job / ".hydra").mkdir(parents=True)
    (job / "metrics.json").write_text(json.dumps({"bbox/AP": ap}))
    (job / ".hydra" / "overrides.yaml").write_text(f"- backbone={backbone}\n- neck={neck}\n")
    choices = {"backbone": backbone, "neck": neck, "head": "detect"}
    (job / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump({"hydra": {"runtime": {"choices": choices}}}))
    (job / ".hydra" / "config.yaml").write_text(yaml.safe_dump({"data": {"image_size": 320}}))


def test_accuracy_against_latency_from_a_sweep(tmp_path: Path) -> None:
    _fake_job(tmp_path / "sweep", "0", "resnet18", "pan", 0.41)
    _fake_job(tmp_path / "sweep", "1", "vit_t", "fpn", 0.33)
    _fake_job(tmp_path / "sweep", "2", "swin_t", "fpn", 0.5)  # not benchmarked: left off
    jobs = collect_sweep(tmp_path / "sweep")
    assert jobs[0]["choices"]["backbone"] == "resnet18" and jobs[0]["image_size"] == 320
    rows = [
        {"backbone": "resnet18", "neck": "pan", "head": "detect", "size": 320, "predict_ms": 40.0},
        {"backbone": "resnet18", "neck": "pan", "head": "detect", "size": 640, "predict_ms": 150.0},
        {"backbone": "vit_t", "neck": "fpn", "head": "detect", "size": 640, "predict_ms": 90.0},
    ]
    path = accuracy_chart(rows, jobs, tmp_path / "acc.png")
    assert path is not None and path.stat().st_size > 1000
