"""COCO loading: id mapping, crowd and empty images, bad files, odd image modes."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from detect.data import CocoDataModule, CocoDetection, build_transforms, read_image
from detect.data.coco import CategoryMap


def write_set(
    root: Path, sizes: dict[int, tuple[int, int]], annotations: list[dict], categories: list[dict]
) -> Path:
    (root / "images").mkdir(parents=True)
    images = []
    for image_id, (width, height) in sizes.items():
        Image.fromarray(np.full((height, width, 3), 90, np.uint8)).save(root / "images" / f"{image_id}.jpg")
        images.append({"id": image_id, "file_name": f"{image_id}.jpg", "width": width, "height": height})
    ann_file = root / "ann.json"
    ann_file.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return ann_file


CATEGORIES = [{"id": 90, "name": "toothbrush"}, {"id": 1, "name": "person"}, {"id": 44, "name": "bottle"}]


def ann(id_: int, image_id: int, category_id: int, bbox: list[float], iscrowd: int = 0) -> dict:
    return {
        "id": id_,
        "image_id": image_id,
        "category_id": category_id,
        "bbox": bbox,
        "area": bbox[2] * bbox[3],
        "iscrowd": iscrowd,
    }


@pytest.fixture()
def small_set(tmp_path: Path) -> Path:
    return write_set(
        tmp_path,
        {1: (200, 100), 2: (97, 131), 3: (64, 64)},
        [
            ann(1, 1, 90, [10, 10, 50, 40]),
            ann(2, 1, 44, [100, 20, 30, 30]),
            ann(3, 1, 1, [0, 0, 200, 100], iscrowd=1),
            ann(4, 2, 1, [90, 120, 20, 20]),
        ],
        CATEGORIES,
    )


def test_ids_with_gaps_map_to_contiguous_labels_and_back(small_set: Path) -> None:
    dataset = CocoDetection(small_set, small_set.parent / "images", build_transforms(128), 128)
    assert dataset.categories.ids == (1, 44, 90) and dataset.categories.names == (
        "person",
        "bottle",
        "toothbrush",
    )
    sample = dataset[0]
    assert sorted(sample.targets.labels.tolist()) == [1, 2]  # bottle, toothbrush; the crowd box is left out
    assert sample.image.shape == (3, 128, 128)
    # Letterbox scale 128/200: the toothbrush box (10, 10, 60, 50) lands at 0.64x.
    box = sample.targets.boxes[sample.targets.labels == 2][0]
    assert box.tolist() == pytest.approx([6.4, 6.4, 38.4, 32.0], abs=0.6)
    assert sample.meta.scale == pytest.approx(0.64)
    roundtrip = CategoryMap.from_list(dataset.categories.to_list())
    assert roundtrip == dataset.categories


def test_odd_sizes_and_boxes_cut_by_the_border(small_set: Path) -> None:
    dataset = CocoDetection(small_set, small_set.parent / "images", build_transforms(64), 64)
    sample = dataset[1]  # 97x131 with a box running past the right and bottom edges
    assert sample.image.shape == (3, 64, 64)
    x0, y0, x1, y1 = sample.targets.boxes[0].tolist()
    assert x1 <= 97 * 64 / 131 + 0.5 and y1 <= 64


def test_image_without_annotations(small_set: Path) -> None:
    dataset = CocoDetection(small_set, small_set.parent / "images", build_transforms(64), 64)
    sample = dataset[2]
    assert len(sample.targets) == 0 and sample.targets.boxes.shape == (0, 4)


def test_missing_image_is_skipped_with_a_count_or_fatal(
    small_set: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (small_set.parent / "images" / "2.jpg").unlink()
    (small_set.parent / "images" / "3.jpg").write_bytes(b"not a jpeg")
    dataset = CocoDetection(small_set, small_set.parent / "images", build_transforms(64), 64)
    assert dataset.image_ids == [1]
    assert "image_missing (image file missing): 1 image, skipped" in caplog.text and "id 2;" in caplog.text
    assert (
        "image_not_image (file is not an image): 1 image, skipped" in caplog.text and "id 3;" in caplog.text
    )
    with pytest.raises(FileNotFoundError, match="id 2"):
        CocoDetection(
            small_set, small_set.parent / "images", build_transforms(64), 64, missing_images="error"
        )


def test_missing_paths_are_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="annotation file not found: .*nope.json"):
        CocoDetection(tmp_path / "nope.json", tmp_path, build_transforms(64), 64)
    with pytest.raises(FileNotFoundError, match="image folder not found"):
        CocoDetection(tmp_path / "nope.json", tmp_path / "imgs", build_transforms(64), 64)


def test_broken_annotation_file_is_reported(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"images": [], "annotations": [{"id": 1}]}')
    with pytest.raises(ValueError, match="bad.json"):
        CocoDetection(bad, tmp_path, build_transforms(64), 64)


def test_datamodule_batches(small_set: Path) -> None:
    images = str(small_set.parent / "images")
    datamodule = CocoDataModule(
        str(small_set), images, str(small_set), images, image_size=64, batch_size=2, num_workers=0
    )
    datamodule.setup("fit")
    batch = next(iter(datamodule.train_dataloader()))
    assert batch.images.shape == (2, 3, 64, 64) and len(batch.targets) == 2 and len(batch.metas) == 2
    assert len(datamodule.categories) == 3


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "I;16"])
def test_read_image_gives_rgb(tmp_path: Path, mode: str) -> None:
    path = tmp_path / "image.png"
    Image.new(mode, (30, 20)).save(path)
    image = read_image(path)
    assert image.shape == (20, 30, 3) and image.dtype == np.uint8


def test_read_image_applies_exif_rotation(tmp_path: Path) -> None:
    path = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    Image.new("RGB", (40, 20)).save(path, exif=exif)
    assert read_image(path).shape == (40, 20, 3)


def test_crowd_only_image_gives_empty_targets_with_masks(tmp_path: Path) -> None:
    ann_file = write_set(
        tmp_path,
        {5: (80, 60)},
        [
            {
                "id": 1,
                "image_id": 5,
                "category_id": 1,
                "bbox": [0, 0, 40, 30],
                "area": 1200,
                "iscrowd": 1,
                "segmentation": {"size": [60, 80], "counts": [0, 1200, 3600]},
            }
        ],
        CATEGORIES,
    )
    data = CocoDetection(
        ann_file, tmp_path / "images", build_transforms(64), 64, load_masks=True, load_keypoints=True
    )
    sample = data[0]
    assert len(sample.targets) == 0 and sample.targets.masks.shape == (0, 64, 64)
    assert sample.targets.keypoints.shape[0] == 0
