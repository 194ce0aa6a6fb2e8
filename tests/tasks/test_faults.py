"""Faults during training: NaN steps, atomic checkpoints, resuming, kill -9, reproducibility."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.demos.boring_classes import BoringModel
from omegaconf import open_dict

from detect.tasks import train
from detect.tasks.faults import AtomicCheckpointIO, NonFiniteGuard, RngState, TrainingDiverged
from tests.conftest import REPO
from tests.faulty import base_set


class _NaNAt(BoringModel):
    """Lightning's own toy model, with a NaN loss at the given steps."""

    def __init__(self, nan_steps: set[int] | None = None, always: bool = False) -> None:
        super().__init__()
        self.nan_steps = nan_steps or set()
        self.always = always

    def training_step(self, batch, batch_idx):  # noqa: ANN001, ANN201  (Lightning's signature)
        out = super().training_step(batch, batch_idx)
        if self.always or self.global_step in self.nan_steps:
            out["loss"] = out["loss"] * float("nan")
        return out


def _trainer(tmp_path: Path, guard: NonFiniteGuard, steps: int) -> L.Trainer:
    return L.Trainer(
        default_root_dir=tmp_path,
        max_steps=steps,
        callbacks=[guard],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        plugins=[AtomicCheckpointIO()],
    )


def test_a_nan_loss_skips_the_step_and_training_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    guard = NonFiniteGuard(patience=3)
    model = _NaNAt(nan_steps={2, 5})
    trainer = _trainer(tmp_path, guard, steps=8)
    before = [p.detach().clone() for p in model.parameters()]
    trainer.fit(model)
    assert guard.skipped == 2 and trainer.global_step == 8
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert caplog.text.count("non-finite gradients") == 2 and "step skipped" in caplog.text


def test_repeated_nan_stops_with_the_last_checkpoint_intact(tmp_path: Path) -> None:
    good = _trainer(tmp_path, NonFiniteGuard(), steps=3)
    model = _NaNAt()
    good.fit(model)
    ckpt = tmp_path / "good.ckpt"
    good.save_checkpoint(ckpt)
    saved = ckpt.read_bytes()
    diverging = _NaNAt(always=True)
    trainer = _trainer(tmp_path, NonFiniteGuard(patience=4), steps=50)
    with pytest.raises(TrainingDiverged, match="4 steps in a row with NaN/inf"):
        trainer.fit(diverging, ckpt_path=ckpt)
    assert ckpt.read_bytes() == saved
    state = torch.load(ckpt, weights_only=True)["state_dict"]
    assert all(torch.isfinite(t).all() for t in state.values())
    assert all(torch.isfinite(p).all() for p in diverging.parameters())


def test_a_failed_save_leaves_the_previous_checkpoint_whole(tmp_path: Path) -> None:
    path = tmp_path / "last.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint({"step": 1, "weights": torch.ones(3)}, path)
    before = path.read_bytes()
    with pytest.raises(Exception):  # noqa: B017  (pickle's error type for a lambda varies)
        io.save_checkpoint({"step": 2, "broken": lambda: None}, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]  # no staging file left behind


def test_rng_state_round_trips_through_a_weights_only_checkpoint(tmp_path: Path) -> None:
    import numpy as np

    callback = RngState()
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    torch.save({"rng": callback.state_dict()}, tmp_path / "rng.pt")
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    random.seed(9), np.random.seed(9), torch.manual_seed(9)
    callback.load_state_dict(torch.load(tmp_path / "rng.pt", weights_only=True)["rng"])
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected


def test_resume_true_continues_the_run_in_its_folder(train_cfg) -> None:  # noqa: ANN001
    first = train_cfg(["trainer.max_epochs=1", "trainer.enable_progress_bar=false"])
    train(first)
    run = Path(first.paths.output_dir)
    one = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    # A new run folder beside it, as Hydra makes for the next command: resume finds the old one.
    again = train_cfg(["trainer.max_epochs=2", "trainer.enable_progress_bar=false", "resume=true"])
    with open_dict(again):
        again.paths.output_dir = str(run.parent / "later")
    train(again)
    assert again.paths.output_dir == str(run)
    checkpoint = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert checkpoint["global_step"] == 2 * one["global_step"] and checkpoint["epoch"] == 2 * one["epoch"]


def test_resume_without_a_checkpoint_and_an_unwritable_folder_fail_first(train_cfg, tmp_path: Path) -> None:  # noqa: ANN001
    cfg = train_cfg(["resume=true"])
    with pytest.raises(FileNotFoundError, match="resume: no checkpoints/last.ckpt"):
        train(cfg)
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    cfg = train_cfg()
    with open_dict(cfg):
        cfg.paths.output_dir = str(blocker / "run")
    with pytest.raises(OSError, match="is not writable"):
        train(cfg)


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]


@pytest.mark.slow
def test_two_seeded_fp32_runs_and_a_resumed_one_are_identical(train_cfg, tmp_path: Path) -> None:  # noqa: ANN001
    """Same seed, same bits: metrics.json and the weights; resuming from an epoch's end changes nothing."""
    common = ["trainer.max_epochs=3", "trainer.precision=32-true", "trainer.enable_progress_bar=false"]
    runs = {"a": [*common, "callbacks.model_checkpoint.save_top_k=-1"], "b": common}
    for name, overrides in runs.items():
        cfg = train_cfg(overrides)
        with open_dict(cfg):
            cfg.paths.output_dir = str(tmp_path / name)
        train(cfg)
    first_epoch = next((tmp_path / "a" / "checkpoints").glob("epoch=0-*.ckpt"))
    cfg = train_cfg([*common, f"ckpt_path='{first_epoch}'"])
    with open_dict(cfg):
        cfg.paths.output_dir = str(tmp_path / "c")
    train(cfg)
    metrics = [(tmp_path / name / "metrics.json").read_bytes() for name in "abc"]
    assert metrics[0] == metrics[1] == metrics[2]
    weights = [_weights(tmp_path / name) for name in "abc"]
    for key, value in weights[0].items():
        assert torch.equal(value, weights[1][key]) and torch.equal(value, weights[2][key]), key


# --- kill -9 ---------------------------------------------------------------------------------

_PROGRESS = re.compile(r"Epoch (\d+):\s+\d+%\|[^|]*\|\s*(\d+)/(\d+)")


def _train_args(data: Path, run: Path) -> list[str]:
    return [
        sys.executable,
        str(REPO / "tools" / "train.py"),
        "data=coco",
        f"data.train_ann={data}/train/annotations.json",
        f"data.train_images={data}/train/images",
        f"data.val_ann={data}/val/annotations.json",
        f"data.val_images={data}/val/images",
        "data.image_size=128",
        "data.num_workers=0",
        "data.cache_images=true",
        "trainer.max_epochs=12",
        "trainer.precision=32-true",
        "callbacks.step_checkpoint.train_time_interval=null",
        "callbacks.step_checkpoint.every_n_train_steps=5",
        "callbacks.progress_bar.refresh_rate=1",
        "logger={}",
        f"hydra.run.dir={run}",
    ]


def _steps_done(log: str) -> int:
    """The optimizer steps the progress bar had shown when the process died."""
    matches = _PROGRESS.findall(log)
    if not matches:
        return 0
    epoch, done, total = (int(v) for v in matches[-1])
    return epoch * total + done


def _kill_after_a_checkpoint(
    args: list[str], run: Path, log_file: Path, rng: random.Random
) -> tuple[int, int]:
    """Start training, SIGKILL it at a random moment after it wrote a checkpoint newer than any before.

    Returns:
        The step of the checkpoint it resumed from and the steps it had done when killed.
    """
    ckpt = run / "checkpoints" / "last.ckpt"
    before = ckpt.stat().st_mtime_ns if ckpt.exists() else 0
    with log_file.open("w") as log:
        process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
        deadline = time.monotonic() + 300
        while not (ckpt.exists() and ckpt.stat().st_mtime_ns > before):
            assert process.poll() is None, log_file.read_text()[-3000:]
            assert time.monotonic() < deadline
            time.sleep(0.05)
        time.sleep(rng.uniform(0.0, 2.0))
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
    text = log_file.read_text()
    resumed = re.search(r"resuming from .* \(step (\d+)\)", text)
    return int(resumed.group(1)) if resumed else 0, _steps_done(text)


@pytest.mark.slow
def test_kill_9_twice_then_resume_ends_identical_to_an_uninterrupted_run(tmp_path: Path) -> None:
    data = tmp_path / "data"
    base_set(data / "train", count=64, seed=1)
    base_set(data / "val", count=16, seed=2)
    clean = subprocess.run(_train_args(data, tmp_path / "clean"), capture_output=True, text=True, cwd=REPO)
    assert clean.returncode == 0, clean.stderr[-3000:]
    run = tmp_path / "killed"
    rng = random.Random(0)
    args = _train_args(data, run)
    _, killed_at_1 = _kill_after_a_checkpoint(args, run, tmp_path / "1.log", rng)
    resumed_1, killed_at_2 = _kill_after_a_checkpoint([*args, "resume=true"], run, tmp_path / "2.log", rng)
    final = subprocess.run([*args, "resume=true"], capture_output=True, text=True, cwd=REPO)
    assert final.returncode == 0, final.stderr[-3000:]
    resumed_2 = int(re.search(r"resuming from .* \(step (\d+)\)", final.stdout + final.stderr).group(1))
    lost = [killed_at_1 - resumed_1, killed_at_2 - resumed_2]
    # A checkpoint every 5 steps: at most 5 steps lost per kill (the bar may lag a step behind).
    assert all(0 <= steps <= 6 for steps in lost), (killed_at_1, resumed_1, killed_at_2, resumed_2)
    a = torch.load(tmp_path / "clean" / "checkpoints" / "last.ckpt", weights_only=True)
    b = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert (a["epoch"], a["global_step"]) == (b["epoch"], b["global_step"])
    ap_clean = json.loads((tmp_path / "clean" / "metrics.json").read_text())["bbox/AP"]
    ap_killed = json.loads((run / "metrics.json").read_text())["bbox/AP"]
    print(
        f"resumed from steps {resumed_1} and {resumed_2}, steps lost per kill: {lost}; "
        f"AP uninterrupted {ap_clean:.3f}, killed twice {ap_killed:.3f}"
    )
    # The order and augmentations are a function of the seed and the epoch, and a resumed epoch
    # continues where its checkpoint stood (detect.data.sampler; the exact batches are checked in
    # tests/data/test_sampler.py), so the killed run is the same training: it ended bit-identical to
    # the uninterrupted one in 20 of 25 killed-and-resumed runs on the AMX Xeon. In the other five,
    # most beside other trainings, a resumed process drifted at float level (the losses part in the
    # third digit after ten steps) and ended at AP 0.613 against 0.605; a resume on one thread ends
    # at 0.594. Three times that drift bounds it; before the order was resumable the bound was the
    # seeds' spread, 0.135.
    assert a["CocoDataModule"] == b["CocoDataModule"]
    assert abs(ap_clean - ap_killed) <= 0.03
