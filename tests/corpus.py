"""The bad-input corpus: datasets, images, configs, checkpoints and predict sources, each with its outcome.

Two kinds of case:

- :data:`DATA_CASES`: one fault in an otherwise clean set, loaded by the training loader
  (``CocoDetection``); expected outcome ``loads``: the set still loads, the warning names the
  fault kind (and, for skips, the set is smaller by exactly what was skipped).
- :data:`CLI_CASES`: a command line; expected outcome ``stops`` (exit 1, a one-line message
  containing ``expect``, no traceback) or ``runs`` (exit 0, ``expect`` named in the log).

``python -m tests.corpus`` lists them; ``tests/test_corpus.py`` runs them (slow).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from tests.faulty import ANNOTATION_FAULTS, IMAGE_FAULTS, MODE_FAULTS, base_set, broken_copy, truncate

__all__ = ["CLI_CASES", "DATA_CASES", "CliCase", "DataCase"]


@dataclass(frozen=True)
class DataCase:
    """One fault put in a clean 32-image set; ``kind`` is what the loader's warning must name."""

    name: str
    kind: str
    build: Callable[[Path, Path], tuple[Path, Path]]  # (clean set root, work dir) -> (json, images)


@dataclass(frozen=True)
class CliCase:
    """A command: ``tool`` with ``args(work)``; ``outcome`` is ``stops`` or ``runs``.

    ``process``: run as its own process (the real command line) rather than through
    :func:`detect.utils.run_cli` in the test's process, which gives the same output without the
    cost of starting Python: needed where Hydra's entry point itself answers (config errors).
    """

    name: str
    group: str
    tool: str
    args: Callable[[Path], list[str]]
    outcome: str
    expect: str
    process: bool = False


def _fault(kind: str) -> Callable[[Path, Path], tuple[Path, Path]]:
    return lambda clean, work: broken_copy(clean / "annotations.json", clean / "images", work, [kind])


def _mode(mode: str) -> Callable[[Path, Path], tuple[Path, Path]]:
    def build(clean: Path, work: Path) -> tuple[Path, Path]:
        ann, images = broken_copy(clean / "annotations.json", clean / "images", work, [])
        content = json.loads(ann.read_text())
        image = sorted(content["images"], key=lambda i: i["id"])[MODE_FAULTS[mode]]
        path = images / image["file_name"]
        pixels = Image.open(path).convert("RGB")
        path.unlink()
        if mode == "I;16":
            out = Image.fromarray(np.asarray(pixels.convert("L"), np.uint16) * 257)
        else:
            out = pixels.convert(mode)
        suffix = ".jpg" if mode == "CMYK" else ".png"
        image["file_name"] = str(Path(image["file_name"]).with_suffix(suffix))
        out.save(images / image["file_name"])
        ann.write_text(json.dumps(content))
        return ann, images

    return build


def _edit(edit: Callable[[dict], None]) -> Callable[[Path, Path], tuple[Path, Path]]:
    def build(clean: Path, work: Path) -> tuple[Path, Path]:
        ann, images = broken_copy(clean / "annotations.json", clean / "images", work, [])
        content = json.loads(ann.read_text())
        edit(content)
        ann.write_text(json.dumps(content))
        return ann, images

    return build


def _with_keypoints(content: dict) -> None:
    content["categories"][0]["keypoints"] = ["top", "bottom"]
    content["categories"][0]["skeleton"] = [[1, 2]]
    for ann in content["annotations"]:
        if ann["category_id"] == 1:
            x, y, w, h = ann["bbox"]
            ann["keypoints"] = [x + w / 2, y + 1, 2, x + w / 2, y + h - 1, 2]
            ann["num_keypoints"] = 2


def _keypoints_wrong_length(content: dict) -> None:
    _with_keypoints(content)
    next(a for a in content["annotations"] if "keypoints" in a)["keypoints"] = [1, 2, 2]


def _keypoint_out_of_range(content: dict) -> None:
    _with_keypoints(content)
    next(a for a in content["annotations"] if "keypoints" in a)["keypoints"][:3] = [900, 900, 2]


DATA_CASES: list[DataCase] = [
    *(DataCase(f"image: {kind}", kind, _fault(kind)) for kind in IMAGE_FAULTS),
    *(DataCase(f"image: mode {mode}", "image_mode", _mode(mode)) for mode in MODE_FAULTS),
    *(DataCase(f"annotation: {kind}", kind, _fault(kind)) for kind in ANNOTATION_FAULTS),
    DataCase(
        "annotation: keypoints of the wrong length", "keypoints_wrong_length", _edit(_keypoints_wrong_length)
    ),
    DataCase(
        "annotation: keypoint outside the image", "keypoints_out_of_range", _edit(_keypoint_out_of_range)
    ),
    DataCase(
        "annotation: without image_id",
        "annotation_invalid",
        _edit(lambda c: c["annotations"][3].pop("image_id")),
    ),
    DataCase(
        "annotation: segmentation of another type",
        "segmentation_invalid",
        _edit(lambda c: c["annotations"][5].update(segmentation="polygon")),
    ),
    DataCase(
        "annotation: no bbox, a polygon",
        "box_from_segmentation",
        _edit(lambda c: c["annotations"][7].pop("bbox")),
    ),
    DataCase(
        "image: entry without file_name",
        "image_invalid",
        _edit(lambda c: c["images"][4].pop("file_name")),
    ),
]


# --- command lines ----------------------------------------------------------------------------


def _train(ann: str, images: str, *extra: str) -> list[str]:
    return [
        "data=coco",
        f"data.train_ann={ann}",
        f"data.train_images={images}",
        f"data.val_ann={ann}",
        f"data.val_images={images}",
        "data.image_size=64",
        "data.num_workers=0",
        "trainer.fast_dev_run=true",
        "logger={}",
        *extra,
    ]


def _json(work: Path, content: object, raw: str | None = None) -> str:
    path = work / "bad.json"
    path.write_text(raw if raw is not None else json.dumps(content))
    return str(path)


def _clean_content(work: Path) -> dict:
    return json.loads((work / "clean" / "annotations.json").read_text())


def _train_on(edit: Callable[[dict], object]) -> Callable[[Path], list[str]]:
    def args(work: Path) -> list[str]:
        content = _clean_content(work)
        edited = edit(content)
        return _train(_json(work, content if edited is None else edited), str(work / "clean" / "images"))

    return args


def _dup_image(c: dict) -> None:
    c["images"].append(dict(c["images"][0], file_name="again.jpg"))


def _dup_category(c: dict) -> None:
    c["categories"].append({"id": 1, "name": "again"})


def _no_images_left(c: dict) -> None:
    for image in c["images"]:
        image["file_name"] = "nowhere/" + image["file_name"]


def _nan_box(c: dict) -> None:
    c["annotations"][0]["bbox"] = [float("nan"), 0, 4, 4]


def _clean(work: Path, *extra: str) -> list[str]:
    return _train(str(work / "clean" / "annotations.json"), str(work / "clean" / "images"), *extra)


def _corrupt_ckpt(work: Path) -> str:
    path = work / "corrupt.ckpt"
    path.write_bytes((work / "model.ckpt").read_bytes()[:5000])
    return str(path)


def _text_ckpt(work: Path) -> str:
    path = work / "notes.ckpt"
    path.write_text("this is not a checkpoint\n")
    return str(path)


def _predict(work: Path, source: str, model: str | None = None) -> list[str]:
    return [f"model={model or work / 'model.ckpt'}", f"source={source}", f"hydra.run.dir={work / 'out'}"]


def _folder_with_a_corrupt_image(work: Path) -> str:
    folder = work / "photos"
    folder.mkdir(exist_ok=True)
    Image.new("RGB", (64, 48), (200, 30, 30)).save(folder / "good.jpg")
    Image.new("RGB", (64, 48), (30, 200, 30)).save(folder / "cut.jpg")
    truncate(folder / "cut.jpg")
    return str(folder)


def _empty_folder(work: Path) -> str:
    (work / "empty").mkdir(exist_ok=True)
    return str(work / "empty")


def _bad_video(work: Path) -> str:
    (work / "clip.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(200))
    return str(work / "clip.mp4")


def _list_with_missing(work: Path) -> str:
    folder = work / "listed"
    folder.mkdir(exist_ok=True)
    Image.new("RGB", (40, 40)).save(folder / "there.jpg")
    (work / "list.txt").write_text(f"{folder / 'there.jpg'}\n{folder / 'gone.jpg'}\n")
    return str(work / "list.txt")


def _unwritable(work: Path) -> str:
    (work / "a-file").write_text("")
    return str(work / "a-file" / "run")


CLI_CASES: list[CliCase] = [
    # Data that leaves nothing to train on: one line, before training.
    CliCase(
        "json: not JSON",
        "data",
        "train",
        lambda w: _train(_json(w, None, "{oops"), str(w)),
        "stops",
        "not valid JSON",
    ),
    CliCase(
        "json: empty file",
        "data",
        "train",
        lambda w: _train(_json(w, None, ""), str(w)),
        "stops",
        "not valid JSON",
    ),
    CliCase(
        "json: a list at top level",
        "data",
        "train",
        lambda w: _train(_json(w, []), str(w)),
        "stops",
        "not a COCO json",
    ),
    CliCase(
        "json: no categories",
        "data",
        "train",
        _train_on(lambda c: c.update(categories=[])),
        "stops",
        "no categories",
    ),
    CliCase(
        "json: no images", "data", "train", _train_on(lambda c: c.update(images=[])), "stops", "no images"
    ),
    CliCase("json: image id twice", "data", "train", _train_on(_dup_image), "stops", "is listed twice"),
    CliCase(
        "json: category id twice",
        "data",
        "train",
        _train_on(_dup_category),
        "stops",
        "category id 1 is listed twice",
    ),
    CliCase(
        "json: no image file found",
        "data",
        "train",
        _train_on(_no_images_left),
        "stops",
        "no usable image left",
    ),
    CliCase(
        "json: a NaN box under data.strict=true",
        "data",
        "train",
        lambda w: [*_train_on(_nan_box)(w), "data.strict=true"],
        "stops",
        "box_not_finite",
        process=True,
    ),
    CliCase(
        "json: annotation file missing",
        "data",
        "train",
        lambda w: _train(str(w / "none.json"), str(w)),
        "stops",
        "annotation file not found",
    ),
    CliCase(
        "images: folder missing",
        "data",
        "train",
        lambda w: _train(str(w / "clean" / "annotations.json"), str(w / "nope")),
        "stops",
        "image folder not found",
    ),
    CliCase(
        "data: every fault at once",
        "data",
        "train",
        lambda w: _train(str(w / "broken" / "annotations.json"), str(w / "broken" / "images")),
        "runs",
        "box_not_finite",
        process=True,
    ),
    CliCase(
        "data: every fault at once, evaluated from a model file",
        "data",
        "eval",
        lambda w: [
            f"model={w / 'model.ckpt'}",
            f"data.val_ann={w / 'broken' / 'annotations.json'}",
            f"data.val_images={w / 'broken' / 'images'}",
            "data.num_workers=0",
        ],
        "runs",
        "image_corrupt",
    ),
    # Configs.
    CliCase(
        "config: unknown backbone",
        "config",
        "train",
        lambda w: _clean(w, "backbone=resnet9000"),
        "stops",
        "resnet9000",
        process=True,
    ),
    CliCase(
        "config: unknown key",
        "config",
        "train",
        lambda w: _clean(w, "trainer.max_epoch=3"),
        "stops",
        "max_epoch",
        process=True,
    ),
    CliCase(
        "config: image size below 32",
        "config",
        "train",
        lambda w: _clean(w, "data.image_size=16"),
        "stops",
        "image_size",
    ),
    CliCase(
        "config: batch size not a number",
        "config",
        "train",
        lambda w: _clean(w, "data.batch_size=abc"),
        "stops",
        "batch_size",
        process=True,
    ),
    CliCase(
        "config: training json not given",
        "config",
        "train",
        lambda w: ["data=coco", "logger={}"],
        "stops",
        "train_ann",
        process=True,
    ),
    CliCase(
        "config: output folder not writable",
        "config",
        "train",
        lambda w: _clean(w, f"hydra.run.dir={_unwritable(w)}"),
        "stops",
        "not writable",
    ),
    # Checkpoints.
    CliCase(
        "checkpoint: truncated, to predict",
        "checkpoint",
        "predict",
        lambda w: _predict(w, str(w), _corrupt_ckpt(w)),
        "stops",
        "corrupt.ckpt",
        process=True,
    ),
    CliCase(
        "checkpoint: a text file, to predict",
        "checkpoint",
        "predict",
        lambda w: _predict(w, str(w), _text_ckpt(w)),
        "stops",
        "notes.ckpt",
    ),
    CliCase(
        "checkpoint: missing, to predict",
        "checkpoint",
        "predict",
        lambda w: _predict(w, str(w), str(w / "gone.ckpt")),
        "stops",
        "gone.ckpt",
    ),
    CliCase(
        "checkpoint: truncated, to resume",
        "checkpoint",
        "train",
        lambda w: _clean(w, f"ckpt_path={_corrupt_ckpt(w)}"),
        "stops",
        "not a readable checkpoint",
    ),
    CliCase(
        "checkpoint: resume with no run",
        "checkpoint",
        "train",
        lambda w: _clean(w, "resume=true", f"hydra.run.dir={w / 'fresh'}"),
        "stops",
        "no checkpoints/last.ckpt",
    ),
    # Predict sources.
    CliCase(
        "source: missing path",
        "source",
        "predict",
        lambda w: _predict(w, str(w / "nothing-here")),
        "stops",
        "no such file",
    ),
    CliCase(
        "source: empty folder",
        "source",
        "predict",
        lambda w: _predict(w, _empty_folder(w)),
        "stops",
        "no images or videos",
    ),
    CliCase(
        "source: a truncated photo among good ones",
        "source",
        "predict",
        lambda w: _predict(w, _folder_with_a_corrupt_image(w)),
        "runs",
        "skipping",
        process=True,
    ),
    CliCase(
        "source: a video that cannot be opened",
        "source",
        "predict",
        lambda w: _predict(w, _bad_video(w)),
        "stops",
        "clip.mp4",
    ),
    CliCase(
        "source: a list naming a missing file",
        "source",
        "predict",
        lambda w: _predict(w, _list_with_missing(w)),
        "runs",
        "gone.jpg",
    ),
]


def prepare(work: Path) -> None:
    """The clean set and the broken copy every case starts from (the checkpoint comes from the test)."""
    base_set(work / "clean", count=32)
    broken_copy(work / "clean" / "annotations.json", work / "clean" / "images", work / "broken")


if __name__ == "__main__":
    for case in DATA_CASES:
        print(f"data        {case.name:50s} loads, names {case.kind}")
    for case in CLI_CASES:
        print(f"{case.group:11s} {case.name:50s} {case.outcome}: {case.expect}")
    print(f"{len(DATA_CASES) + len(CLI_CASES)} cases")
