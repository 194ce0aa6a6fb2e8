"""Mosaics keep image, boxes, masks and keypoints in register, and stop for the last epochs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from detect.data.coco import Sample
from detect.data.datamodule import CocoDataModule
from detect.data.mosaic import Mosaic
from detect.structures import ImageMeta, Targets
from tests.conftest import shapes_datamodule

SIZE = 64
COLOURS = [(250, 10, 10), (10, 250, 10), (10, 10, 250), (250, 250, 10)]


def _sample(k: int) -> Sample:
    """A grey image holding one coloured square (box, mask and a keypoint at its centre)."""
    image = torch.full((3, SIZE, SIZE), 114, dtype=torch.uint8)
    x0, y0, side = 8 + 6 * k, 10 + 5 * k, 24
    image[:, y0 : y0 + side, x0 : x0 + side] = torch.tensor(COLOURS[k], dtype=torch.uint8)[:, None, None]
    mask = torch.zeros((1, SIZE, SIZE), dtype=torch.uint8)
    mask[0, y0 : y0 + side, x0 : x0 + side] = 1
    centre = x0 + side / 2, y0 + side / 2
    return Sample(
        image=image,
        targets=Targets(
            torch.tensor([[x0, y0, x0 + side, y0 + side]], dtype=torch.float32),
            torch.tensor([k]),
            masks=mask,
            keypoints=torch.tensor([[[centre[0], centre[1], 2.0]]]),
            areas=torch.tensor([float(side * side)]),
        ),
        meta=ImageMeta(image_id=k, orig_size=(SIZE, SIZE)),
    )


def test_no_mosaic_returns_the_item_and_draws_nothing() -> None:
    data = [_sample(k) for k in range(4)]
    mosaic = Mosaic(data, 0.0, SIZE)
    state = torch.get_rng_state()
    assert mosaic[2] is data[2]
    assert torch.equal(torch.get_rng_state(), state)


def test_mosaic_keeps_image_boxes_masks_and_keypoints_in_register() -> None:
    torch.manual_seed(0)
    data = [_sample(k) for k in range(4)]
    mosaic = Mosaic(data, 1.0, SIZE)
    seen_labels: set[int] = set()
    for trial in range(40):
        out = mosaic[trial % 4]
        t = out.targets
        assert out.image.shape == (3, SIZE, SIZE) and out.image.dtype == torch.uint8
        assert t.masks is not None and t.masks.shape == (len(t.boxes), SIZE, SIZE)
        assert t.keypoints is not None and t.keypoints.shape == (len(t.boxes), 1, 3)
        for box, label, mask, point, area in zip(t.boxes, t.labels, t.masks, t.keypoints, t.areas):
            seen_labels.add(int(label))
            x1, y1, x2, y2 = box.tolist()
            assert 0 <= x1 < x2 <= SIZE and 0 <= y1 < y2 <= SIZE
            # The mask's extent is the box, to the pixel.
            ys, xs = torch.nonzero(mask, as_tuple=True)
            assert abs(xs.min().item() - x1) <= 1 and abs(xs.max().item() + 1 - x2) <= 1
            assert abs(ys.min().item() - y1) <= 1 and abs(ys.max().item() + 1 - y2) <= 1
            # The box's inside has its object's colour.
            cx, cy = int((x1 + x2) / 2), int((y1 + y2) / 2)
            colour = torch.tensor(COLOURS[int(label)])
            assert (out.image[:, cy, cx].int() - colour).abs().max() <= 12
            # The keypoint moved with its object, or was marked unseen when cut off.
            if point[0, 2] > 0:
                assert x1 - 1 <= point[0, 0] <= x2 + 1 and y1 - 1 <= point[0, 1] <= y2 + 1
            assert 0 < area <= (x2 - x1) * (y2 - y1) + 1
    # Objects of all four images appear across the mosaics.
    assert seen_labels == {0, 1, 2, 3}


def test_mosaic_of_a_skipped_image_is_the_plain_item() -> None:
    data = [_sample(0), None, None, None]
    torch.manual_seed(1)
    mosaic = Mosaic(data, 1.0, SIZE)
    assert all(mosaic[0] is data[0] for _ in range(5))


def test_bad_mosaic_settings_are_config_errors() -> None:
    with pytest.raises(ValueError, match="data.augment.mosaic must be a probability"):
        CocoDataModule(image_size=128, augment={"mosaic": 1.5})
    with pytest.raises(ValueError, match="data.augment.close_mosaic must be an integer"):
        CocoDataModule(image_size=128, augment={"mosaic": 0.5, "close_mosaic": -1})


def test_the_data_module_closes_mosaics_for_the_last_epochs(tiny_shapes: Path) -> None:
    data = shapes_datamodule(
        tiny_shapes, image_size=128, batch_size=4, augment={"mosaic": 1.0, "close_mosaic": 2}
    )
    data.setup("fit")
    loader = data.train_dataloader()
    assert isinstance(loader.dataset, Mosaic)
    data.set_epoch(0, 5)
    batch = next(iter(loader))
    assert batch.images.shape == (4, 3, 128, 128)
    assert loader.dataset.enabled
    data.set_epoch(3, 5)
    assert not loader.dataset.enabled
    data.set_epoch(2, 5)
    assert loader.dataset.enabled
