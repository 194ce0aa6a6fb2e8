"""The training order and augmentations are a function of (seed, epoch): resumable part-way, and
the same whatever the number of loader workers or where a checkpoint fell."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from detect.data.datamodule import CocoDataModule
from detect.data.sampler import ResumableSampler
from tests.conftest import shapes_datamodule


def test_an_epoch_order_depends_on_seed_and_epoch_only() -> None:
    data = range(50)
    a, b = ResumableSampler(data, seed=7), ResumableSampler(data, seed=7)
    first = list(a)
    assert first == list(b) == list(a)  # drawing again repeats: no hidden generator state
    assert sorted(key.index for key in first) == list(range(50))
    a.set_epoch(1)
    second = list(a)
    assert [k.index for k in second] != [k.index for k in first]
    assert {k.index: k.seed for k in second} != {k.index: k.seed for k in first}  # fresh draws per epoch
    assert [k.index for k in ResumableSampler(data, seed=8)] != [k.index for k in first]


def test_a_resumed_epoch_is_the_tail_of_the_whole_one() -> None:
    whole = ResumableSampler(range(40), seed=3)
    whole.set_epoch(4)
    expected = list(whole)
    resumed = ResumableSampler(range(40), seed=3)
    resumed.resume(4, 24)
    resumed.set_epoch(4)  # Lightning sets the epoch again after the resume: the position stays
    assert list(resumed) == expected[24:]
    resumed.set_epoch(5)  # the next epoch starts from its beginning
    assert len(list(resumed)) == 40
    with pytest.raises(ValueError, match="cannot resume at sample 41"):
        resumed.resume(4, 41)


def test_ranks_split_the_epoch_and_give_each_item_the_same_seed() -> None:
    single = {key.index: key.seed for key in ResumableSampler(range(30), seed=1)}
    shares = [list(ResumableSampler(range(30), seed=1, num_replicas=3, rank=r)) for r in range(3)]
    assert sorted(key.index for share in shares for key in share) == list(range(30))
    assert all(single[key.index] == key.seed for share in shares for key in share)


def _module(shapes: Path, workers: int) -> CocoDataModule:
    module = shapes_datamodule(
        shapes,
        image_size=96,
        batch_size=4,
        num_workers=workers,
        cache_images=False,
        augment={"mosaic": 0.5},
    )
    module.setup("fit")
    return module


def _batches(loader: torch.utils.data.DataLoader) -> list[tuple[torch.Tensor, list[torch.Tensor]]]:
    return [(batch.images, [t.boxes for t in batch.targets]) for batch in loader]


def _same(a: list, b: list) -> bool:
    return len(a) == len(b) and all(
        torch.equal(x_images, y_images) and all(map(torch.equal, x_boxes, y_boxes))
        for (x_images, x_boxes), (y_images, y_boxes) in zip(a, b, strict=True)
    )


def test_augmented_batches_are_the_same_with_workers_and_after_a_mid_epoch_resume(tiny_shapes: Path) -> None:
    torch.manual_seed(0)
    alone = _module(tiny_shapes, workers=0)
    loader = alone.train_dataloader()
    batches = _batches(loader)
    assert len(batches) == 6
    loader.sampler.set_epoch(1)
    assert not _same(batches, _batches(loader))

    torch.manual_seed(0)
    assert _same(batches, _batches(_module(tiny_shapes, workers=2).train_dataloader()))

    # What a checkpoint two batches into epoch 0 restores into a fresh module.
    resumed = _module(tiny_shapes, workers=0)
    resumed.load_state_dict({"order_seed": loader.sampler.seed, "epoch": 0, "start": 2 * 4})
    assert _same(batches[2:], _batches(resumed.train_dataloader()))
