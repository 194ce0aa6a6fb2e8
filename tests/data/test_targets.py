"""Masks and keypoints through the data pipeline: shapes, flips and left/right swaps."""

from pathlib import Path

import numpy as np
import pytest
import torch

from detect.data import CocoDetection, build_transforms
from detect.data.coco import segmentation_to_mask
from detect.structures import COCO_PERSON_KEYPOINTS, KeypointInfo


def dataset(root: Path, hflip: float) -> CocoDetection:
    return CocoDetection(
        root / "annotations/instances_train.json",
        root / "images/train",
        build_transforms(128),
        128,
        hflip=hflip,
        load_masks=True,
        load_keypoints=True,
    )


def first_person(data: CocoDetection) -> int:
    person = data.categories.names.index("person")
    for index in range(len(data)):
        if (data[index].targets.labels == person).any():
            return index
    pytest.fail("no person in the tiny set")


def test_masks_and_keypoints_come_with_boxes(tiny_shapes: Path) -> None:
    data = dataset(tiny_shapes, hflip=0.0)
    sample = data[first_person(data)]
    targets = sample.targets
    assert targets.masks.shape == (len(targets), 128, 128) and targets.masks.dtype == torch.uint8
    assert targets.keypoints.shape == (len(targets), 6, 3)
    for box, mask in zip(targets.boxes, targets.masks):
        ys, xs = mask.nonzero(as_tuple=True)
        assert (
            xs.min() >= box[0] - 1
            and xs.max() <= box[2] + 1
            and ys.min() >= box[1] - 1
            and ys.max() <= box[3] + 1
        )
    person = data.categories.names.index("person")
    assert (targets.keypoints[targets.labels == person][..., 2] > 0).any()
    assert (targets.keypoints[targets.labels != person] == 0).all()


def test_flip_mirrors_everything_and_swaps_left_and_right(tiny_shapes: Path) -> None:
    plain, flipped = dataset(tiny_shapes, 0.0), dataset(tiny_shapes, 1.0)
    index = first_person(plain)
    a, b = plain[index], flipped[index]
    assert torch.equal(b.image, a.image.flip(-1))
    assert torch.allclose(b.targets.boxes[:, [2, 0]], 128 - a.targets.boxes[:, [0, 2]])
    assert torch.equal(b.targets.masks, a.targets.masks.flip(-1))
    # left_hand (1) of the flipped image is the mirrored right_hand (2) of the original.
    person = plain.categories.names.index("person")
    kp_a = a.targets.keypoints[a.targets.labels == person][0]
    kp_b = b.targets.keypoints[b.targets.labels == person][0]
    if kp_a[2, 2] > 0:
        assert kp_b[1, 0] == pytest.approx(127 - kp_a[2, 0].item()) and kp_b[1, 1] == pytest.approx(
            kp_a[2, 1].item()
        )


def test_flipped_keypoints_stay_on_their_pixels(tiny_shapes: Path) -> None:
    # A keypoint names a pixel; after a flip it must name that pixel's mirror, so each visible
    # keypoint sits on the same image content with and without the flip.
    plain, flipped = dataset(tiny_shapes, 0.0), dataset(tiny_shapes, 1.0)
    index = first_person(plain)
    a, b = plain[index], flipped[index]
    person = plain.categories.names.index("person")
    flip_index = plain.keypoint_info.flip_index
    for kp_a, kp_b in zip(
        a.targets.keypoints[a.targets.labels == person], b.targets.keypoints[b.targets.labels == person]
    ):
        for k, k_mirror in enumerate(flip_index):
            x, y, v = kp_a[k].tolist()
            if v == 0:
                continue
            xb, yb, _ = kp_b[k_mirror].tolist()
            assert (xb, yb) == (pytest.approx(127 - x), pytest.approx(y))
            column, row = round(x), round(y)
            assert torch.equal(b.image[:, row, 127 - column], a.image[:, row, column])


def test_flip_index_from_names() -> None:
    info = KeypointInfo(COCO_PERSON_KEYPOINTS)
    assert info.flip_index[:5] == [0, 2, 1, 4, 3]
    coco = KeypointInfo.from_categories(
        [{"id": 1, "name": "person", "keypoints": list(COCO_PERSON_KEYPOINTS)}]
    )
    assert coco.sigmas[0] == 0.026 and len(coco.sigmas) == 17
    other = KeypointInfo.from_categories([{"id": 3, "name": "x", "keypoints": ["a", "b"]}], default_sigma=0.1)
    assert other.sigmas == (0.1, 0.1) and other.category_ids == (3,)
    assert KeypointInfo.from_categories([{"id": 1, "name": "cat"}]) is None


def test_polygons_and_rle_rasterise_alike() -> None:
    from pycocotools import mask as mask_utils

    polygon = [[2.0, 2.0, 20.0, 2.0, 20.0, 12.0, 2.0, 12.0]]
    from_polygon = segmentation_to_mask(polygon, 16, 24)
    rle = mask_utils.encode(np.asfortranarray(from_polygon))
    assert np.array_equal(segmentation_to_mask(rle, 16, 24), from_polygon)
    uncompressed = {"size": [16, 24], "counts": [int(c) for c in _runs(from_polygon)]}
    assert np.array_equal(segmentation_to_mask(uncompressed, 16, 24), from_polygon)


def _runs(mask: np.ndarray) -> list[int]:
    flat = mask.flatten(order="F")
    runs, current, count = [], 0, 0
    for value in flat:
        if value == current:
            count += 1
        else:
            runs.append(count)
            current, count = value, 1
    runs.append(count)
    return runs


def test_category_map_round_trip_keeps_keypoints_and_sigmas() -> None:
    from detect.data.coco import CategoryMap

    categories = [
        {
            "id": 7,
            "name": "figure",
            "keypoints": ["head", "left_hand", "right_hand"],
            "skeleton": [[1, 2], [1, 3]],
        },
        {"id": 2, "name": "ball"},
    ]
    original = CategoryMap.from_coco(categories, keypoint_sigma=0.11)
    assert original.ids == (2, 7) and original.keypoints.sigmas == (0.11, 0.11, 0.11)
    restored = CategoryMap.from_list(original.to_list())
    assert restored == original and restored.keypoints.skeleton == ((1, 2), (1, 3))
    with pytest.raises(ValueError, match="twice"):
        CategoryMap.from_list([{"id": 1, "name": "a"}, {"id": 1, "name": "b"}])
