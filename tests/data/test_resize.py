"""Progressive resizing: downscaled training batches keep image and targets in register, for the
first epochs only, and validation never sees them."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch

from detect.data.datamodule import CocoDataModule
from detect.data.resize import early_image_size, resize_batch
from detect.structures import Batch, Targets
from detect.tasks.callbacks import DataEpoch
from tests.conftest import shapes_datamodule


def _batch(size: int = 64) -> Batch:
    """A grey image holding a red square, with its box, mask, one keypoint at its centre and area."""
    image = torch.full((1, 3, size, size), 114, dtype=torch.uint8)
    x0, y0, side = 16, 8, 32
    image[0, :, y0 : y0 + side, x0 : x0 + side] = torch.tensor([250, 10, 10], dtype=torch.uint8)[
        :, None, None
    ]
    mask = torch.zeros((1, size, size), dtype=torch.uint8)
    mask[0, y0 : y0 + side, x0 : x0 + side] = 1
    targets = Targets(
        torch.tensor([[x0, y0, x0 + side, y0 + side]], dtype=torch.float32),
        torch.tensor([0]),
        masks=mask,
        keypoints=torch.tensor([[[x0 + side / 2, y0 + side / 2, 2.0]]]),
        areas=torch.tensor([float(side * side)]),
    )
    return Batch(image, [targets])


def test_a_resized_batch_keeps_image_and_targets_in_register() -> None:
    batch = _batch(64)
    small = resize_batch(batch, 32)
    assert small.images.shape == (1, 3, 32, 32) and small.images.dtype == torch.uint8
    target = small.targets[0]
    torch.testing.assert_close(target.boxes, torch.tensor([[8.0, 4.0, 24.0, 20.0]]))
    torch.testing.assert_close(target.keypoints, torch.tensor([[[16.0, 12.0, 2.0]]]))
    torch.testing.assert_close(target.areas, torch.tensor([256.0]))
    # The square's pixels lie inside the scaled box, the grey outside it.
    red = small.images[0, 0] > 200
    rows, columns = red.nonzero(as_tuple=True)
    assert (columns.min().item(), rows.min().item(), columns.max().item() + 1, rows.max().item() + 1) == (
        8,
        4,
        24,
        20,
    )
    # Masks keep their finer grid over the same frame; the mask loss area-averages them.
    assert target.masks is batch.targets[0].masks
    assert target.labels is batch.targets[0].labels
    assert resize_batch(batch, 64) is batch


def test_a_float_batch_stays_float() -> None:
    batch = _batch(64)
    batch = Batch(batch.images.float() / 255, batch.targets)
    small = resize_batch(batch, 32)
    assert small.images.dtype == torch.float32 and 0 <= small.images.min() <= small.images.max() <= 1


def test_non_square_batches_are_refused() -> None:
    batch = Batch(torch.zeros((1, 3, 32, 64), dtype=torch.uint8), [Targets.empty()])
    with pytest.raises(ValueError, match="square training images, got 32x64"):
        resize_batch(batch, 32)


@pytest.mark.parametrize(
    ("size", "scale", "expected"), [(320, 0.8, 256), (320, 0.7, 224), (640, 0.75, 480), (128, 0.25, 32)]
)
def test_early_size_is_a_multiple_of_32(size: int, scale: float, expected: int) -> None:
    assert early_image_size(size, scale) == expected


@pytest.mark.parametrize(
    ("augment", "message"),
    [
        ({"early_scale": 1.5}, r"data.augment.early_scale must be a number from 0.25 to 1, got 1.5"),
        ({"early_scale": "small"}, r"data.augment.early_scale must be a number from 0.25 to 1, got 'small'"),
        ({"early_epochs": -1}, r"data.augment.early_epochs must be an integer >= 0, got -1"),
        ({"early_epochs": 2.5}, r"data.augment.early_epochs must be an integer >= 0, got 2.5"),
    ],
)
def test_bad_early_settings_are_one_line_config_errors(augment: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        CocoDataModule(image_size=128, augment=augment)


class _Sizes(L.Callback):
    """Records the side of every batch the training and validation steps receive."""

    def __init__(self) -> None:
        self.train: list[tuple[int, int]] = []
        self.val: list[int] = []

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        self.train.append((trainer.current_epoch, batch.images.shape[-1]))

    def on_validation_batch_start(self, trainer, module, batch, batch_idx, dataloader_idx=0) -> None:
        self.val.append(batch.images.shape[-1])


class _Tiny(L.LightningModule):
    """The least module that trains on detection batches: one weight on the mean pixel."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(()))

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        return (self.weight * batch.images.float().mean()) ** 2

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        pass

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_the_first_epochs_train_downscaled_and_validation_keeps_its_size(tiny_shapes: Path) -> None:
    data = shapes_datamodule(
        tiny_shapes, image_size=128, batch_size=8, augment={"early_scale": 0.5, "early_epochs": 2}
    )
    sizes = _Sizes()
    trainer = L.Trainer(
        max_epochs=3,
        accelerator="cpu",
        callbacks=[DataEpoch(), sizes],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    trainer.fit(_Tiny(), datamodule=data)
    per_epoch = {epoch: {side for e, side in sizes.train if e == epoch} for epoch in range(3)}
    assert per_epoch == {0: {64}, 1: {64}, 2: {128}}
    assert set(sizes.val) == {128}
