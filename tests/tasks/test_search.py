"""Optuna searches (hparams_search=...): the study in SQLite, failed trials recorded, a killed search resumed."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO

optuna = pytest.importorskip("optuna")
pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")

# A search space for a 128 px shapes set; image size 100 is not a multiple of 32, so those trials fail.
SEARCH = """\
# @package _global_
defaults:
  - optuna
hydra:
  sweeper:
    n_trials: {n_trials}
    sampler:
      n_startup_trials: 10
    params:
      optim.lr: tag(log, interval(0.0003, 0.006))
      data.image_size: {sizes}
      optim.weight_decay: "0.05"
      data.batch_size: "4"
      backbone: cspdarknet_n
      neck: pan
"""


def _command(shapes: Path, conf: Path, sweep: Path, epochs: int) -> list[str]:
    return [
        sys.executable,
        str(REPO / "tools" / "train.py"),
        "hparams_search=tiny",
        f"hydra.searchpath=[file://{conf}]",
        "hydra.sweeper.study_name=tiny",
        f"hydra.sweep.dir={sweep}",
        "data=coco",
        f"data.train_ann={shapes}/annotations/instances_train.json",
        f"data.train_images={shapes}/images/train",
        f"data.val_ann={shapes}/annotations/instances_val.json",
        f"data.val_images={shapes}/images/val",
        "data.num_workers=0",
        "data.cache_images=true",
        "logger={}",
        "num_visualizations=0",
        "measure_cost=false",
        f"trainer.max_epochs={epochs}",
        "trainer.enable_progress_bar=false",
    ]


def _search_conf(tmp_path: Path, n_trials: int, sizes: str) -> Path:
    conf = tmp_path / "conf"
    (conf / "hparams_search").mkdir(parents=True)
    (conf / "hparams_search" / "tiny.yaml").write_text(SEARCH.format(n_trials=n_trials, sizes=sizes))
    return conf


def _study(sweep: Path) -> optuna.Study:
    return optuna.load_study(study_name="tiny", storage=f"sqlite:///{sweep}/optuna.db")


@pytest.mark.slow
def test_failed_trials_are_recorded_and_the_search_goes_on(tiny_shapes: Path, tmp_path: Path) -> None:
    sweep = tmp_path / "search"
    conf = _search_conf(tmp_path, n_trials=3, sizes="choice(128, 100)")
    result = subprocess.run(_command(tiny_shapes, conf, sweep, epochs=1), capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    trials = _study(sweep).get_trials()
    states = [trial.state.name for trial in trials]
    assert len(trials) == 3 and set(states) == {"COMPLETE", "FAIL"}, states
    for trial in trials:
        assert trial.user_attrs["folder"] == str(sweep / str(trial.number))
        if trial.state.name == "FAIL":
            assert trial.params["data.image_size"] == 100
            assert "not a multiple of 32" in trial.user_attrs["error"]
            assert "not a multiple of 32" in (sweep / str(trial.number) / "error.txt").read_text()
        else:
            value = float(
                __import__("json").loads((sweep / str(trial.number) / "metrics.json").read_text())["bbox/AP"]
            )
            assert trial.value == value
    assert "Traceback" not in result.stderr + result.stdout
    board = (sweep / "results.md").read_text()
    assert board.count("(failed: input size 100x100 is not a multiple of 32") == states.count("FAIL")
    assert (sweep / "optimization_results.yaml").is_file()


@pytest.mark.slow
def test_a_killed_search_resumes_from_its_database(tiny_shapes: Path, tmp_path: Path) -> None:
    sweep = tmp_path / "search"
    conf = _search_conf(tmp_path, n_trials=3, sizes='"128"')
    command = _command(tiny_shapes, conf, sweep, epochs=2)
    process = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
    )
    database = sweep / "optuna.db"
    deadline = time.monotonic() + 200
    states: list[str] = []
    while time.monotonic() < deadline and process.poll() is None:
        # Kill while a trial trains, at least trial 0 being finished.
        if database.is_file():
            try:
                with sqlite3.connect(database) as db:
                    states = [row[0] for row in db.execute("SELECT state FROM trials ORDER BY number")]
            except sqlite3.OperationalError:
                # Optuna creates the file before its tables, and may hold a write lock.
                states = []
            if len(states) >= 2 and states[0] == "COMPLETE" and states[-1] == "RUNNING":
                if (sweep / str(len(states) - 1) / ".hydra").is_dir():
                    break
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    before = _study(sweep).get_trials()
    killed = len(before) - 1
    assert [t.state.name for t in before] == ["COMPLETE"] * killed + ["RUNNING"], process.stderr.read()[
        -3000:
    ]

    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    after = _study(sweep).get_trials()
    # The finished trials are kept, the killed one is marked as interrupted and its parameters
    # run again as the next trial, and new trials complete the study's 3.
    assert [t.state.name for t in after] == ["COMPLETE"] * killed + ["FAIL"] + ["COMPLETE"] * (3 - killed)
    for old, new in zip(before[:killed], after):
        assert new.value == old.value and new.params == old.params
    assert after[killed].user_attrs["error"].startswith("interrupted")
    assert after[killed + 1].params == after[killed].params == before[killed].params
    # The restarted sampler does not draw the earlier trials' parameters again.
    earlier = {t.params["optim.lr"] for t in after[: killed + 1]}
    assert all(t.params["optim.lr"] not in earlier for t in after[killed + 2 :])
    assert f"{killed} of 3 trials finished, {3 - killed} to run" in result.stdout + result.stderr
    for trial in after:
        assert (sweep / str(trial.number) / ".hydra").is_dir()
    rerun = subprocess.run(command, capture_output=True, text=True)
    assert rerun.returncode == 0 and "3 of 3 trials finished, 0 to run" in rerun.stdout + rerun.stderr
    assert len(_study(sweep).get_trials()) == 4


def test_search_config_composes_with_its_database(tmp_path: Path) -> None:
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra_plugins.hydra_optuna_sweeper._impl import create_params_from_overrides

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose(
            "train",
            overrides=["hparams_search=optuna", "hydra.sweeper.study_name=lr", f"hydra.sweep.dir={tmp_path}"],
            return_hydra_config=True,
        )
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_.endswith("ResumableOptunaSweeper") and cfg.optimized_metric == "bbox/AP"
    assert sweeper.storage == f"sqlite:///{tmp_path}/optuna.db" and sweeper.direction == "maximize"
    distributions, fixed = create_params_from_overrides([f"{k}={v}" for k, v in sweeper.params.items()])
    assert set(distributions) == {"optim.lr", "optim.weight_decay", "data.batch_size", "backbone", "neck"}
    assert distributions["optim.lr"].low == 0.0003 and not fixed
    # Every searched backbone and neck is a config of its group.
    for group in ("backbone", "neck"):
        for choice in distributions[group].choices:
            assert (REPO / "conf" / group / f"{choice}.yaml").is_file()


def test_objective_names_a_missing_metric() -> None:
    from detect.tasks.train import objective

    assert objective({"bbox/AP": 0.25}, "bbox/AP") == 0.25 and objective({"bbox/AP": 0.25}, None) is None
    with pytest.raises(ValueError, match="segm/AP is not a metric of this run .*bbox/AP"):
        objective({"bbox/AP": 0.25, "bbox/AP/cat": 0.1}, "segm/AP")
