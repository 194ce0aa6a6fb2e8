"""tools/check_data.py: every fault named with its count and ids, reports and plots, the exit status."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from detect.data.doctor import KINDS
from tests.conftest import REPO
from tests.faulty import ANNOTATION_FAULTS, IMAGE_FAULTS, base_set, broken_copy


def _check(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess, Path]:
    out = tmp_path / "report"
    result = subprocess.run(
        [
            sys.executable,
            str(REPO / "tools" / "check_data.py"),
            *args,
            "progress=false",
            f"hydra.run.dir={out}",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
    )
    assert "Traceback" not in result.stdout + result.stderr, result.stderr[-3000:]
    return result, out


def test_a_broken_set_is_reported_kind_by_kind(tmp_path: Path) -> None:
    clean = base_set(tmp_path / "clean", count=32)
    ann, images = broken_copy(clean, clean.parent / "images", tmp_path / "broken")
    result, out = _check(
        tmp_path,
        "data=coco",
        f"data.train_ann={ann}",
        f"data.train_images={images}",
        f"data.val_ann={clean}",
        f"data.val_images={clean.parent / 'images'}",
    )
    assert result.returncode == 1 and "errors found" in result.stdout
    train, val = json.loads((out / "report.json").read_text())
    assert (train["status"], val["status"]) == ("errors", "clean")
    expected = {*IMAGE_FAULTS, *ANNOTATION_FAULTS, "image_mode"}
    assert set(train["faults"]) == expected
    for kind in expected:
        entry = train["faults"][kind]
        assert entry["severity"] == KINDS[kind].severity and entry["count"] >= 1 and entry["first"]
        assert f"{kind} (" in result.stdout  # printed with its count and first ids
    assert train["faults"]["image_mode"]["count"] == 5  # L, RGBA, P, CMYK, 16-bit
    assert train["images_usable"] == 28 and train["images"] == 32
    report = (out / "report.md").read_text()
    assert "| `box_not_finite` | skip | 1 |" in report and "## val: clean" in report
    for plot in ("objects_per_class.png", "box_sizes.png"):
        assert (out / plot).stat().st_size > 5_000


@pytest.mark.slow
def test_clean_or_only_mended_data_exits_0_and_nothing_usable_exits_1_in_one_line(tmp_path: Path) -> None:
    clean = base_set(tmp_path / "clean", count=26)
    ann, images = broken_copy(clean, clean.parent / "images", tmp_path / "mended", ["image_exif_rotated"])
    result, out = _check(tmp_path, "data=coco", f"data.train_ann={ann}", f"data.train_images={images}")
    assert result.returncode == 0 and "no errors" in result.stdout
    assert json.loads((out / "report.json").read_text())[0]["status"] == "warnings"
    (tmp_path / "bad.json").write_text("{oops")
    result, out = _check(
        tmp_path, "data=coco", f"data.train_ann={tmp_path / 'bad.json'}", f"data.train_images={images}"
    )
    assert result.returncode == 1 and "not valid JSON" in result.stdout
    result, _ = _check(tmp_path, "data=coco")
    assert result.returncode == 1 and result.stderr.strip().startswith("error: nothing to check")


@pytest.mark.slow
def test_coco128_is_clean_and_its_broken_copy_is_not(tmp_path: Path, shared_realdata: Path) -> None:
    root = shared_realdata / "coco128"
    ann, images = root / "annotations" / "instances_train2017.json", root / "images" / "train2017"
    result, out = _check(tmp_path, "data=coco", f"data.train_ann={ann}", f"data.train_images={images}")
    assert result.returncode == 0
    (train,) = json.loads((out / "report.json").read_text())
    assert (train["images_usable"], train["annotations_usable"]) == (128, 929)
    assert train["faults"]["image_mode"]["first"][0]["id"] == 86  # coco128's one grayscale photo
    broken_ann, broken_images = broken_copy(ann, images, tmp_path / "broken")
    result, out = _check(
        tmp_path, "data=coco", f"data.train_ann={broken_ann}", f"data.train_images={broken_images}"
    )
    assert result.returncode == 1
    (train,) = json.loads((out / "report.json").read_text())
    assert (train["images_usable"], train["annotations_usable"]) == (124, 914)
