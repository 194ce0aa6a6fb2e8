"""The bad-input corpus (tests/corpus.py): every case ends as it says, and none in a traceback."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import open_dict

from detect.data.coco import CocoDetection
from detect.data.doctor import KINDS
from detect.data.transforms import build_transforms
from detect.tasks import evaluate, predict, train
from detect.utils import run_cli
from tests.checkpoints import write_checkpoint
from tests.conftest import REPO, compose_config
from tests.corpus import CLI_CASES, DATA_CASES, CliCase, DataCase, prepare

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory, tiny_shapes: Path) -> Path:
    root = tmp_path_factory.mktemp("corpus")
    prepare(root)
    write_checkpoint(root / "model.ckpt", "detect", tiny_shapes)
    return root


def test_the_corpus_has_forty_cases_or_more() -> None:
    assert len(DATA_CASES) + len(CLI_CASES) >= 40
    assert {case.kind for case in DATA_CASES} == {
        kind for kind, info in KINDS.items() if info.severity != "fatal"
    }


@pytest.mark.parametrize("case", DATA_CASES, ids=lambda case: case.name)
def test_data_case_loads_and_names_the_fault(
    case: DataCase, work: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ann, images = case.build(work / "clean", tmp_path / "set")
    with caplog.at_level(logging.INFO):
        dataset = CocoDetection(ann, images, build_transforms(64), 64, load_masks=True)
        samples = [dataset[i] for i in range(len(dataset))]
    assert f"{case.kind} (" in caplog.text or f"({case.kind})" in caplog.text
    if KINDS[case.kind].severity == "skip" and KINDS[case.kind].unit == "image":
        # Found by the header check (left out at once) or at decode (returned as None, named).
        assert len(samples) - sum(s is None for s in samples) == 31
    else:
        assert all(sample is not None for sample in samples)
    for sample in samples:
        if sample is not None:
            assert sample.image.shape == (3, 64, 64)
            boxes = sample.targets.boxes
            assert bool(((boxes >= 0) & (boxes <= 64)).all()) and bool((boxes[:, 2:] > boxes[:, :2]).all())


def _in_process(
    case: CliCase, args: list[str], capsys: pytest.CaptureFixture, caplog: pytest.LogCaptureFixture
) -> tuple[int, str, str]:
    """The tool's function through run_cli, as its entry point calls it: (exit status, stdout, stderr)."""
    run_dir = next(arg.split("=", 1)[1] for arg in args if arg.startswith("hydra.run.dir="))
    cfg = compose_config([arg for arg in args if not arg.startswith("hydra.")], config_name=case.tool)
    with open_dict(cfg):
        cfg.paths.output_dir = run_dir
    function = {"train": train, "predict": predict, "eval": evaluate}[case.tool]
    status = 0
    with caplog.at_level(logging.INFO):
        try:
            run_cli(function, cfg)
        except SystemExit as exit_:
            status = int(exit_.code or 0)
    captured = capsys.readouterr()
    return status, captured.out, captured.err + caplog.text


@pytest.mark.parametrize("case", CLI_CASES, ids=lambda case: case.name)
def test_cli_case_ends_as_expected(
    case: CliCase, work: Path, tmp_path: Path, capsys: pytest.CaptureFixture, caplog: pytest.LogCaptureFixture
) -> None:
    args = case.args(work)
    if not any(arg.startswith("hydra.run.dir=") for arg in args):
        args.append(f"hydra.run.dir={tmp_path / 'run'}")
    if case.process:
        result = subprocess.run(
            [sys.executable, str(REPO / "tools" / f"{case.tool}.py"), *args],
            capture_output=True,
            text=True,
            timeout=300,
            cwd=REPO,
        )
        status, out, err = result.returncode, result.stdout, result.stderr
    else:
        status, out, err = _in_process(case, args, capsys, caplog)
    output = out + err
    assert "Traceback" not in output, output[-3000:]
    assert case.expect in output, output[-3000:]
    if case.outcome == "stops":
        assert status == 1, output[-3000:]
        errors = [line for line in err.splitlines() if case.expect in line]
        assert len(errors) >= 1 and len(errors[-1]) < 400
    else:
        assert status == 0, output[-3000:]
