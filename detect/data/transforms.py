"""Albumentations pipelines that keep boxes consistent with the image."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import albumentations as A
import cv2

__all__ = ["AugmentConfig", "build_transforms", "letterbox_params", "scaled_image_size", "val_image_size"]

PAD_VALUE = 114


@dataclass(frozen=True)
class AugmentConfig:
    """Training augmentation; every probability at 0 turns the pipeline into a plain letterbox.

    Attributes:
        hflip: probability of a horizontal flip.
        scale: range of the random zoom applied after letterboxing.
        translate: largest shift, as a fraction of the image side.
        affine_p: probability of applying the zoom/shift.
        color_p: probability of brightness/contrast/saturation/hue jitter.
        brightness, contrast, saturation, hue: jitter strengths (albumentations ColorJitter).
        mosaic: probability that a training image is a mosaic of four (:mod:`detect.data.mosaic`).
        mosaic_scale: range of the mosaic window's zoom (1: objects keep their size).
        close_mosaic: the last epochs train without mosaics.
        early_scale, early_epochs: progressive resizing: the first ``early_epochs`` epochs train on
            batches downscaled to ``image_size * early_scale`` (a multiple of 32), which take fewer
            pixels a step (:mod:`detect.data.resize`); 0 epochs turns it off.
        copy_paste: probability that objects cut from other training images are pasted into
            free space of an image (:mod:`detect.data.copy_paste`).
        copy_paste_objects: objects drawn from the whole training set for each paste; those
            that find free space are pasted.
        copy_paste_classes: the objects that may be pasted: ``None`` any, ``"keypoints"`` those
            with labelled keypoints, or a list of class names.
    """

    hflip: float = 0.5
    scale: tuple[float, float] = (0.5, 1.5)
    translate: float = 0.1
    affine_p: float = 0.5
    color_p: float = 0.8
    brightness: float = 0.3
    contrast: float = 0.3
    saturation: float = 0.5
    hue: float = 0.02
    mosaic: float = 0.0
    mosaic_scale: tuple[float, float] = (0.75, 1.25)
    close_mosaic: int = 2
    early_scale: float = 1.0
    early_epochs: int = 0
    copy_paste: float = 0.0
    copy_paste_objects: int = 3
    copy_paste_classes: str | tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        p = self.copy_paste
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 <= p <= 1:
            raise ValueError(f"data.augment.copy_paste must be a probability in [0, 1], got {p!r}")
        n = self.copy_paste_objects
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ValueError(f"data.augment.copy_paste_objects must be an integer >= 1, got {n!r}")
        classes = self.copy_paste_classes
        if not (
            classes is None
            or isinstance(classes, str)
            or (isinstance(classes, Sequence) and all(isinstance(c, str) for c in classes))
        ):
            raise ValueError(
                "data.augment.copy_paste_classes must be null, 'keypoints' or a list of class names, "
                f"got {classes!r}"
            )
        for name in ("close_mosaic", "early_epochs"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"data.augment.{name} must be an integer >= 0, got {value!r}")
        scale = self.early_scale
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not 0.25 <= scale <= 1:
            raise ValueError(f"data.augment.early_scale must be a number from 0.25 to 1, got {scale!r}")


def val_image_size(image_size: int, val_scale: float = 1.0) -> int:
    """The side validation and the shipped model run at: ``image_size * val_scale``, rounded to a
    multiple of 32 (every catalogue backbone's largest stride)."""
    if isinstance(val_scale, bool) or not isinstance(val_scale, (int, float)) or not 0.25 <= val_scale <= 4:
        raise ValueError(f"data.val_scale must be a number from 0.25 to 4, got {val_scale!r}")
    return image_size if val_scale == 1 else scaled_image_size(image_size, val_scale)


def scaled_image_size(image_size: int, scale: float) -> int:
    """``image_size * scale`` rounded to a multiple of 32 (every catalogue backbone's largest stride)."""
    return max(32, int(round(image_size * scale / 32)) * 32)


def letterbox_params(height: int, width: int, image_size: int) -> tuple[float, tuple[float, float]]:
    """Scale and offset that :func:`build_transforms` applies to a ``height`` x ``width`` image."""
    return image_size / max(height, width), (0.0, 0.0)


def build_transforms(image_size: int, augment: AugmentConfig | None = None) -> A.Compose:
    """Resize the longer side to ``image_size``, pad to a square at the top-left, then augment.

    Padding at the top-left keeps the inverse mapping a pure scale, so predictions go back to the
    original image with one division. Horizontal flips are left to the dataset, which knows how
    to swap left and right keypoints.
    """
    transforms: list[A.BasicTransform] = [
        # INTER_NEAREST samples pixel floor(x / scale), shifting masks ~half a pixel right and down
        # of their boxes and of the image; the _EXACT variant samples the nearest pixel centre.
        A.LongestMaxSize(
            max_size=image_size, interpolation=cv2.INTER_LINEAR, mask_interpolation=cv2.INTER_NEAREST_EXACT
        ),
        A.PadIfNeeded(
            image_size, image_size, position="top_left", border_mode=cv2.BORDER_CONSTANT, fill=PAD_VALUE
        ),
    ]
    if augment is not None:
        if augment.affine_p > 0:
            transforms.append(
                A.Affine(
                    scale=tuple(augment.scale),
                    translate_percent=(-augment.translate, augment.translate),
                    border_mode=cv2.BORDER_CONSTANT,
                    fill=PAD_VALUE,
                    p=augment.affine_p,
                )
            )
        if augment.color_p > 0:
            transforms.append(
                A.ColorJitter(
                    brightness=augment.brightness,
                    contrast=augment.contrast,
                    saturation=augment.saturation,
                    hue=augment.hue,
                    p=augment.color_p,
                )
            )
    return A.Compose(
        transforms,
        bbox_params=A.BboxParams(
            format="pascal_voc",
            label_fields=["labels", "instances"],
            min_area=4.0,
            min_visibility=0.3,
            clip=True,
        ),
        keypoint_params=A.KeypointParams(format="xy", remove_invisible=False),
    )
