"""Copy-paste: objects cut along their masks move with their boxes, keypoints and masks, and
never hide an object already there."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.utils import instantiate

from detect.data.copy_paste import Donor, paste_object
from detect.data.datamodule import CocoDataModule
from detect.data.sampler import SampleKey
from tests.conftest import compose_config, shapes_datamodule, tiny_data


def _donor() -> Donor:
    """A 64 x 64 image with one 10 x 8 object: a filled ellipse of colour 200 on black."""
    image = np.zeros((64, 64, 3), np.uint8)
    mask = np.zeros((64, 64), np.uint8)
    yy, xx = np.mgrid[:64, :64]
    inside = ((xx - 24.5) / 5) ** 2 + ((yy - 33.5) / 4) ** 2 <= 1
    mask[inside] = 1
    image[inside] = 200
    return Donor(
        image=image,
        mask=mask,
        box=np.array([20.0, 30.0, 30.0, 38.0], np.float32),
        label=2,
        fill=0.8,
        keypoints=np.array([[25.0, 34.0, 2.0]], np.float32),
    )


def test_a_pasted_object_lands_in_free_space_with_its_mask() -> None:
    image = np.full((48, 48, 3), 50, np.uint8)
    existing = np.array([[0.0, 0.0, 30.0, 30.0]], np.float32)
    pasted = paste_object(image, existing, _donor(), torch.Generator().manual_seed(0))
    assert pasted is not None
    (dx, dy), mask = pasted
    box = np.array([20 + dx, 30 + dy, 30 + dx, 38 + dy], np.float32)
    assert not (min(box[2], 30) > max(box[0], 0) and min(box[3], 30) > max(box[1], 0))
    # The object's pixels, and only they, changed; its mask is the donor's moved by the shift.
    changed = (image != 50).any(axis=-1)
    assert np.array_equal(changed, mask.astype(bool))
    assert (image[changed] == 200).all()
    assert mask.sum() == _donor().mask.sum()
    ys, xs = np.nonzero(mask)
    assert xs.min() >= box[0] and xs.max() < box[2] and ys.min() >= box[1] and ys.max() < box[3]


def test_no_free_space_pastes_nothing() -> None:
    image = np.full((48, 48, 3), 50, np.uint8)
    full = np.array([[0.0, 0.0, 48.0, 48.0]], np.float32)
    assert paste_object(image, full, _donor(), torch.Generator().manual_seed(0)) is None
    assert (image == 50).all()


def _items(data: CocoDataModule, count: int) -> list:
    data.setup("fit")
    return [data.train_set[SampleKey(i, 100 + i)] for i in range(count)]


def test_pasted_objects_carry_boxes_keypoints_and_masks(tiny_shapes: Path) -> None:
    plain = {"affine_p": 0.0, "color_p": 0.0, "hflip": 0.0}
    data = shapes_datamodule(tiny_shapes, image_size=128, augment={**plain, "copy_paste": 1.0})
    data.request_targets(masks=True, keypoints=True)
    base = shapes_datamodule(tiny_shapes, image_size=128, augment=plain)
    base.request_targets(masks=True, keypoints=True)
    more = 0
    for with_paste, without in zip(_items(data, 24), _items(base, 24)):
        t, b = with_paste.targets, without.targets
        added = len(t.boxes) - len(b.boxes)
        assert added >= 0
        more += added
        # The image's own objects come first and are untouched: nothing hides them.
        assert torch.equal(t.boxes[: len(b.boxes)], b.boxes)
        assert torch.equal(t.masks[: len(b.boxes)], b.masks)
        for box, mask, points in zip(t.boxes, t.masks, t.keypoints):
            ys, xs = torch.nonzero(mask, as_tuple=True)
            assert len(xs) > 0
            assert (
                xs.min() >= box[0] - 1
                and xs.max() <= box[2]
                and ys.min() >= box[1] - 1
                and ys.max() <= box[3]
            )
            seen = points[:, 2] > 0
            assert (points[seen, 0] >= box[0] - 1).all() and (points[seen, 0] <= box[2] + 1).all()
            assert (points[seen, 1] >= box[1] - 1).all() and (points[seen, 1] <= box[3] + 1).all()
        assert (t.areas > 0).all() and len(t.areas) == len(t.boxes)
    assert more > 0


def test_pasting_only_objects_with_keypoints(tiny_shapes: Path) -> None:
    plain = {"affine_p": 0.0, "color_p": 0.0, "hflip": 0.0}
    augment = {**plain, "copy_paste": 1.0, "copy_paste_classes": "keypoints"}
    data = shapes_datamodule(tiny_shapes, image_size=128, augment=augment)
    data.request_targets(keypoints=True)
    base = shapes_datamodule(tiny_shapes, image_size=128, augment=plain)
    base.request_targets(keypoints=True)
    person = data.categories.names.index("person")
    added = 0
    for with_paste, without in zip(_items(data, 24), _items(base, 24)):
        new = with_paste.targets.labels[len(without.targets.labels) :]
        assert (new == person).all()
        assert (with_paste.targets.keypoints[len(without.targets.labels) :, :, 2] > 0).any(dim=1).all()
        added += len(new)
    assert added > 0


def test_bad_copy_paste_settings_are_one_line_errors(tiny_shapes: Path) -> None:
    with pytest.raises(ValueError, match="data.augment.copy_paste must be a probability"):
        CocoDataModule(image_size=128, augment={"copy_paste": 1.5})
    with pytest.raises(ValueError, match="data.augment.copy_paste_objects must be an integer"):
        CocoDataModule(image_size=128, augment={"copy_paste": 0.5, "copy_paste_objects": 0})
    data = shapes_datamodule(
        tiny_shapes, image_size=128, augment={"copy_paste": 0.5, "copy_paste_classes": ["unicorn"]}
    )
    with pytest.raises(ValueError, match=r"copy_paste_classes: \['unicorn'\] not among the classes"):
        data.setup("fit")


def test_head_pose_pastes_figures_on_users_data_too(tiny_shapes: Path) -> None:
    cfg = compose_config(["head=pose", *tiny_data(tiny_shapes)])
    data = instantiate(cfg.data)
    data.request_targets(keypoints=True)
    data.setup("fit")
    assert data.train_set.copy_paste == 1.0 and data.train_set.copy_paste_classes == "keypoints"
    person = data.categories.names.index("person")
    assert (
        data.train_set.index.category_ids[data.train_set._paste_rows] == data.categories.ids[person]
    ).all()
    assert data.val_set.copy_paste == 0.0
