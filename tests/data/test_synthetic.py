"""The embedded shapes set: deterministic, COCO-valid, and as hard as promised."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from detect.data.synthetic import STYLES, ShapesConfig, generate_shapes, render_sample, shapes_ready


def load(root: Path, split: str = "train") -> dict:
    return json.loads((root / "annotations" / f"instances_{split}.json").read_text())


def test_generation_is_deterministic(tmp_path: Path) -> None:
    config = ShapesConfig(num_train=5, num_val=2, seed=7)
    a = load(generate_shapes(tmp_path / "a", config))
    b = load(generate_shapes(tmp_path / "b", config))
    assert a == b
    assert (tmp_path / "a/images/train/train_000001.jpg").read_bytes() == (
        tmp_path / "b/images/train/train_000001.jpg"
    ).read_bytes()
    assert shapes_ready(tmp_path / "a", config) and not shapes_ready(tmp_path / "a", ShapesConfig(seed=8))


def test_content_matches_the_specification(tiny_shapes: Path) -> None:
    coco = load(tiny_shapes)
    assert len(coco["categories"]) >= 6
    per_image = np.bincount([a["image_id"] for a in coco["annotations"]], minlength=len(coco["images"]) + 1)[
        1:
    ]
    assert per_image.min() >= 1 and per_image.max() <= 8
    sizes = [max(a["bbox"][2:]) for a in coco["annotations"]]
    assert min(sizes) >= 3 and max(sizes) <= 160
    assert {a["category_id"] for a in coco["annotations"]} <= {c["id"] for c in coco["categories"]}
    for ann in coco["annotations"]:
        x, y, w, h = ann["bbox"]
        assert 0 <= x and 0 <= y and x + w <= 128 and y + h <= 128
        assert ann["segmentation"] and all(len(p) >= 6 and len(p) % 2 == 0 for p in ann["segmentation"])
        assert 0 < ann["area"] <= w * h


def test_persons_carry_keypoints(tiny_shapes: Path) -> None:
    coco = load(tiny_shapes)
    person = next(c for c in coco["categories"] if "keypoints" in c)
    assert person["keypoints"][1:3] == ["left_hand", "right_hand"] and person["skeleton"]
    persons = [a for a in coco["annotations"] if a["category_id"] == person["id"]]
    assert persons, "the tiny set should hold at least one person"
    for ann in persons:
        assert len(ann["keypoints"]) == 3 * len(person["keypoints"])
        assert ann["num_keypoints"] == sum(v > 0 for v in ann["keypoints"][2::3])
    others = [a for a in coco["annotations"] if a["category_id"] != person["id"]]
    assert all("keypoints" not in a for a in others)


def test_objects_are_occluded_and_truncated_sometimes(tmp_path: Path) -> None:
    coco = load(generate_shapes(tmp_path, ShapesConfig(num_train=40, num_val=1, seed=1)))
    touching_border = [
        a
        for a in coco["annotations"]
        if a["bbox"][0] == 0 or a["bbox"][1] == 0 or a["bbox"][0] + a["bbox"][2] >= 320
    ]
    fragmented = [a for a in coco["annotations"] if a["area"] < 0.45 * a["bbox"][2] * a["bbox"][3]]
    assert len(touching_border) >= 5
    assert len(fragmented) >= 5


def test_every_style_is_valid_coco_and_looks_as_it_says(tmp_path: Path) -> None:
    stats = {}
    for style in STYLES:
        config = ShapesConfig(num_train=6, num_val=1, seed=2, style=style)
        coco = load(generate_shapes(tmp_path / style, config))
        height, width = config.shape
        assert {(i["height"], i["width"]) for i in coco["images"]} == {(height, width)}
        for ann in coco["annotations"]:
            x, y, w, h = ann["bbox"]
            assert 0 <= x and 0 <= y and x + w <= width and y + h <= height
            assert ann["segmentation"] and 0 < ann["area"] <= w * h
        sizes = [max(a["bbox"][2:]) for a in coco["annotations"]]
        pixels = np.stack(
            [
                np.asarray(Image.open(tmp_path / style / "images/train" / i["file_name"]))
                for i in coco["images"]
            ]
        )
        stats[style] = {
            "objects": len(coco["annotations"]) / len(coco["images"]),
            "size": float(np.median(sizes)),
            # Local noise: the mean absolute difference between neighbouring pixels.
            "grain": float(np.abs(np.diff(pixels.astype(np.float32), axis=2)).mean()),
        }
    default = stats["default"]
    assert (
        stats["small"]["objects"] > 2 * default["objects"] and stats["small"]["size"] < 0.8 * default["size"]
    )
    assert stats["dense"]["objects"] > 2 * default["objects"]
    assert stats["plain"]["grain"] < 0.5 * default["grain"] < stats["noisy"]["grain"]
    assert ShapesConfig(style="wide").shape == (180, 320)


def test_styles_share_no_background_and_leave_the_default_set_as_it_was() -> None:
    default, _ = render_sample(ShapesConfig(), 0)
    for style in ("small", "lighting"):  # drawn over the default background kind
        other, _ = render_sample(ShapesConfig(style=style), 0)
        assert np.abs(other.astype(int) - default.astype(int)).mean() > 20
    # The default style is the set of the first version: the same objects for the same seed.
    _, objects = render_sample(ShapesConfig(), 0)
    assert [o["category_id"] for o in objects] == [7, 3, 2]
    with pytest.raises(ValueError, match="unknown shapes style 'foggy'"):
        ShapesConfig(style="foggy")
