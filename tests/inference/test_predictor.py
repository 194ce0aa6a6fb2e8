"""The Python API: detect.load on a checkpoint, every kind of source, Results and its serialisations."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import detect
from detect.inference import CheckpointError, ModelFileError, Results, SourceError
from detect.inference.sources import iter_frames


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory, tiny_shapes: Path) -> Path:
    """Four shapes images in a nested folder, plus a broken file and a text file."""
    root = tmp_path_factory.mktemp("photos")
    files = sorted((tiny_shapes / "images" / "val").glob("*"))[:4]
    (root / "sub").mkdir()
    for i, file in enumerate(files):
        target = root / ("sub" if i % 2 else ".") / f"img{i}.png"
        Image.open(file).save(target)
    (root / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (root / "notes.md").write_text("not an image")
    return root


def test_predict_on_every_source_kind(make_checkpoint, photos: Path, caplog) -> None:
    model = detect.load(make_checkpoint("detect"), score_thresh=0.05)
    assert model.task == "detect" and model.image_size == 128 and len(model.names) == 7
    folder = model.predict(photos)  # recursive; the broken file is named and skipped
    assert len(folder) == 4
    assert "broken.jpg" in caplog.text
    paths = sorted(photos.rglob("img*.png"))
    (photos / "list.txt").write_text("\n".join(str(p.relative_to(photos)) for p in paths))
    assert len(model.predict(photos / "list.txt")) == 4
    assert len(model.predict(str(photos / "**" / "img*.png"))) == 4
    pil = Image.open(paths[0])
    array = np.asarray(pil.convert("RGB"))
    tensor = torch.from_numpy(array).permute(2, 0, 1)
    mixed = model.predict([paths[0], pil, array, tensor, tensor.float() / 255])
    assert len(mixed) == 5
    reference = mixed[0]
    assert len(reference) > 0
    for other in mixed[1:]:
        np.testing.assert_allclose(other.boxes, reference.boxes, atol=0.05)
        assert other.names == reference.names


def test_results_are_in_original_pixels_and_serialise(make_checkpoint, photos: Path) -> None:
    model = detect.load(make_checkpoint("detect"), score_thresh=0.05)
    path = sorted(photos.rglob("img*.png"))[0]
    image = np.asarray(Image.open(path).convert("RGB").resize((200, 100)))
    (result,) = model.predict(image)
    assert isinstance(result, Results) and result.orig_shape == (100, 200)
    assert len(result) > 0
    assert (result.boxes[:, [0, 2]] <= 200).all() and (result.boxes[:, [1, 3]] <= 100).all()
    assert (result.scores >= 0.05).all()
    record = json.loads(result.to_json())
    assert record["width"] == 200 and len(record["boxes"]) == len(result)
    assert record["category_names"] == result.names
    coco = result.to_coco(image_id=7)
    assert len(coco) == len(result) and coco[0]["image_id"] == 7 and len(coco[0]["bbox"]) == 4
    drawn = result.plot()
    assert drawn.shape == image.shape and not np.array_equal(drawn, image)


@pytest.mark.parametrize("head", ["segment", "pose"])
def test_masks_and_keypoints_come_back_in_original_pixels(make_checkpoint, photos: Path, head: str) -> None:
    model = detect.load(make_checkpoint(head), score_thresh=0.05)
    image = np.asarray(Image.open(sorted(photos.rglob("img*.png"))[0]).convert("RGB").resize((160, 96)))
    (result,) = model.predict(image)
    assert len(result) > 0
    if head == "segment":
        assert result.masks.shape == (len(result), 96, 160) and result.masks.dtype == bool
        assert "masks" in result.to_dict()
    else:
        assert result.keypoints.shape == (len(result), 6, 3)
        assert len(result.to_dict()["keypoints"][0]) == 18
    assert result.plot().shape == image.shape


def test_bad_sources_and_model_files_fail_in_one_line(make_checkpoint, tmp_path: Path) -> None:
    model = detect.load(make_checkpoint("detect"))
    with pytest.raises(SourceError, match="no such file"):
        model.predict(tmp_path / "missing.jpg")
    (tmp_path / "clip.mp4").write_bytes(b"\x00" * 100)
    with pytest.raises(SourceError, match="cannot open video"):
        model.predict(tmp_path / "clip.mp4")
    with pytest.raises(SourceError, match="shape"):
        model.predict(np.zeros((4, 4, 4, 4)))
    with pytest.raises(ModelFileError, match="unknown model format"):
        detect.load(tmp_path / "clip.mp4")
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read"):
        detect.load(garbage)
    future = torch.load(make_checkpoint("detect"), weights_only=True)
    future["detect"] = {"version": "9.0.0", "format": 99}
    torch.save(future, tmp_path / "future.ckpt")
    with pytest.raises(CheckpointError, match="upgrade detect"):
        detect.load(tmp_path / "future.ckpt")


def test_frames_of_a_video_are_read_in_order(tmp_path: Path) -> None:
    import cv2

    path = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (64, 48))
    for i in range(6):
        writer.write(np.full((48, 64, 3), 40 * i, dtype=np.uint8))
    writer.release()
    frames = list(iter_frames(path))
    assert [f.index for f in frames] == list(range(6))
    assert frames[0].video == str(path) and frames[0].fps == pytest.approx(10)
    assert frames[0].image.shape == (48, 64, 3)


def test_a_deployed_model_needs_neither_lightning_nor_hydra(make_checkpoint) -> None:
    code = (
        "import sys, numpy as np, detect\n"
        f"model = detect.load({str(make_checkpoint('detect'))!r})\n"
        "model.predict(np.zeros((50, 60, 3), np.uint8))\n"
        "bad = [m for m in ('lightning', 'hydra', 'omegaconf') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[2])
