"""Hydra's submitit launchers: a real local sweep, and the SLURM job a DDP config asks for."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from tests.conftest import REPO, compose_config, tiny_data

submitit = pytest.importorskip("submitit")
pytest.importorskip("hydra_plugins.hydra_submitit_launcher")


def test_slurm_launcher_follows_the_ddp_trainer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf

    GlobalHydra.instance().clear()
    overrides = [
        "hydra/launcher=slurm",
        "hydra.launcher.partition=gpu",
        "hydra.launcher.account=vision",
        "trainer=ddp",
        "trainer.devices=4",
        "trainer.num_nodes=2",
        f"hydra.sweep.dir={tmp_path}",
        "hydra.job.name=train",
    ]
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=overrides, return_hydra_config=True)
    params = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
    assert params.pop("_target_").endswith("SlurmLauncher")
    assert (params["nodes"], params["gpus_per_node"], params["tasks_per_node"]) == (2, 4, 4)
    # The executor as hydra-submitit-launcher builds it, and the sbatch script submitit would submit.
    # submitit refuses to build a SLURM executor where srun is missing: this machine has no cluster.
    monkeypatch.setattr(submitit.SlurmExecutor, "affinity", classmethod(lambda cls: 2))
    executor = submitit.AutoExecutor(
        folder=tmp_path / ".submitit", cluster="slurm", slurm_max_num_timeout=params.pop("max_num_timeout")
    )
    params.pop("submitit_folder")
    shared = set(OmegaConf.structured(BaseQueueConf).keys())
    executor.update_parameters(**{k if k in shared else f"slurm_{k}": v for k, v in params.items()})
    script = executor._executor._make_submission_file_text("python -m detect", "0")
    for line in (
        "#SBATCH --nodes=2",
        "#SBATCH --gpus-per-node=4",
        "#SBATCH --ntasks-per-node=4",
        "#SBATCH --partition=gpu",
        "#SBATCH --account=vision",
        "#SBATCH --time=1440",
    ):
        assert line in script, script
    # One process per GPU, each with its own rank: what Lightning's SLURM environment reads.
    assert compose_config(["trainer=ddp"]).trainer.strategy == "ddp"


@pytest.mark.slow
def test_submitit_local_runs_a_sweep(tiny_shapes: Path, tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    command = [
        sys.executable,
        str(REPO / "tools" / "train.py"),
        "-m",
        "hydra/launcher=submitit_local",
        "hydra.launcher.timeout_min=10",
        f"hydra.sweep.dir={sweep}",
        *tiny_data(tiny_shapes),
        "num_visualizations=0",
        "measure_cost=false",
        "trainer.max_epochs=1",
        "trainer.enable_progress_bar=false",
        "neck=pan,fpn",
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    for job, neck in enumerate(("pan", "fpn")):
        folder = sweep / str(job)
        assert "bbox/AP" in json.loads((folder / "metrics.json").read_text())
        assert f"neck={neck}" in (folder / ".hydra" / "overrides.yaml").read_text()
    # submitit ran each job in its own process and kept its logs.
    logs = list((sweep / ".submitit").glob("*/*_log.out"))
    assert len(logs) == 2, logs
    rows = (sweep / "results.csv").read_text().splitlines()
    assert len(rows) == 3 and "Traceback" not in result.stderr
