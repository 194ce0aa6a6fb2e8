"""Image classification data, to pre-train backbones: a class-per-folder tree, or objects cut from COCO.

- ``source: folder``: ``root/<class name>/<image>``, classes in sorted folder order (torchvision's
  ImageFolder layout).
- ``source: crops``: every non-crowd object of a COCO json, cut out with some context around its
  box and labelled with its category: any detection set is a classification set too.

Unreadable images are skipped and named, as in detection; an empty or missing source is a one-line
error.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import albumentations as A
import cv2
import lightning as L
import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler

from detect.data.images import ImageFault, read_image
from detect.data.sampler import ResumableOrder, SampleKey, generator_for
from detect.data.synthetic import ShapesConfig, ensure_shapes
from detect.data.transforms import PAD_VALUE

__all__ = [
    "ClassBatch",
    "ClassificationDataModule",
    "ClassificationSet",
    "ShapesCropsDataModule",
    "coco_crops",
    "folder_samples",
]

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}


@dataclass(frozen=True)
class ClassSample:
    """One training example: an image file, the box to cut from it (None: the whole image), a label."""

    path: Path
    label: int
    box: tuple[float, float, float, float] | None = None


@dataclass
class ClassBatch:
    """Stacked ``(B, 3, S, S)`` uint8 images and ``(B,)`` labels."""

    images: Tensor
    labels: Tensor

    def __len__(self) -> int:
        return len(self.labels)


def folder_samples(
    root: str | Path, classes: list[str] | None = None
) -> tuple[list[ClassSample], list[dict[str, Any]]]:
    """Samples and class list (``[{"id", "name"}]``, ids from 1) of a class-per-folder tree.

    Args:
        classes: the class names in label order (the training tree's, for a validation tree that
            may lack some); None: the sorted folder names.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"data: class folder tree {root} not found")
    folders = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if classes is None:
        classes = folders
    unknown = sorted(set(folders) - set(classes))
    if unknown:
        raise ValueError(f"data: {root} has folders of classes the training tree lacks: {', '.join(unknown)}")
    samples = [
        ClassSample(path, classes.index(name))
        for name in folders
        for path in sorted((root / name).rglob("*"))
        if path.suffix.lower() in IMAGE_SUFFIXES
    ]
    if not samples:
        raise ValueError(f"data: no images in {root} (expected {root}/<class name>/<image>)")
    return samples, [{"id": i + 1, "name": name} for i, name in enumerate(classes)]


def coco_crops(
    ann_file: str | Path, image_dir: str | Path, min_size: float = 8.0, context: float = 0.15
) -> tuple[list[ClassSample], list[dict[str, Any]]]:
    """One sample per non-crowd object of at least ``min_size`` px, its box grown by ``context``."""
    ann_file, image_dir = Path(ann_file), Path(image_dir)
    if not ann_file.is_file():
        raise FileNotFoundError(f"data: annotation file {ann_file} not found")
    coco = json.loads(ann_file.read_text())
    categories = sorted(
        ({"id": c["id"], "name": c["name"]} for c in coco["categories"]), key=lambda c: c["id"]
    )
    label_of = {c["id"]: i for i, c in enumerate(categories)}
    images = {image["id"]: image for image in coco["images"]}
    samples, skipped = [], 0
    for ann in coco["annotations"]:
        x, y, w, h = ann["bbox"]
        image = images.get(ann["image_id"])
        if (
            ann.get("iscrowd", 0)
            or image is None
            or ann["category_id"] not in label_of
            or max(w, h) < min_size
        ):
            skipped += 1
            continue
        grow = context * max(w, h)
        box = (
            max(0.0, x - grow),
            max(0.0, y - grow),
            min(float(image["width"]), x + w + grow),
            min(float(image["height"]), y + h + grow),
        )
        samples.append(ClassSample(image_dir / image["file_name"], label_of[ann["category_id"]], box))
    if skipped:
        log.info(
            "%s: %d objects left out (crowd, unknown image or class, or under %g px)",
            ann_file,
            skipped,
            min_size,
        )
    if not samples:
        raise ValueError(f"data: no objects of at least {min_size:g} px in {ann_file}")
    return samples, categories


class ClassificationSet(Dataset):
    """Samples read, cut, letterboxed to ``image_size`` and, with ``augment``, augmented.

    Args:
        cache_images: keep decoded images in memory (crops share their image).
    """

    def __init__(
        self, samples: list[ClassSample], image_size: int, augment: bool, cache_images: bool = False
    ) -> None:
        self.samples = samples
        self.image_size = image_size
        resize = [
            A.LongestMaxSize(max_size=image_size, interpolation=cv2.INTER_LINEAR),
            A.PadIfNeeded(image_size, image_size, border_mode=cv2.BORDER_CONSTANT, fill=PAD_VALUE),
        ]
        augmentations = [
            A.Affine(
                scale=(0.8, 1.2), translate_percent=(-0.1, 0.1), rotate=(-10, 10), fill=PAD_VALUE, p=0.5
            ),
            A.HorizontalFlip(p=0.5),
            A.ColorJitter(brightness=0.3, contrast=0.3, saturation=0.5, hue=0.02, p=0.8),
        ]
        self.transform = A.Compose(resize + (augmentations if augment else []))
        self.cache: dict[Path, np.ndarray] | None = {} if cache_images else None
        self._named: set[Path] = set()

    def __len__(self) -> int:
        return len(self.samples)

    def _read(self, path: Path) -> np.ndarray:
        if self.cache is None:
            return read_image(path)
        if path not in self.cache:
            self.cache[path] = read_image(path)
        return self.cache[path]

    def __getitem__(self, key: int | SampleKey) -> tuple[Tensor, int] | None:
        index, generator = generator_for(key)
        sample = self.samples[index]
        try:
            image = self._read(sample.path)
        except ImageFault as fault:
            if sample.path not in self._named:
                self._named.add(sample.path)
                log.warning("skipping %s (%s): %s", sample.path, fault.kind, fault.detail)
            return None
        if sample.box is not None:
            x0, y0, x1, y1 = (int(round(v)) for v in sample.box)
            image = image[y0 : max(y1, y0 + 1), x0 : max(x1, x0 + 1)]
        # Albumentations' own generators, reseeded from the sample's (detect.data.sampler): the run's
        # seed decides every draw, and a resumed run draws as the original did.
        self.transform.set_random_seed(int(torch.randint(0, 2**31 - 1, (), generator=generator).item()))
        image = self.transform(image=np.ascontiguousarray(image))["image"]
        return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))), sample.label


def collate_classes(items: list[tuple[Tensor, int] | None]) -> ClassBatch | None:
    items = [item for item in items if item is not None]
    if not items:
        return None
    return ClassBatch(torch.stack([image for image, _ in items]), torch.tensor([label for _, label in items]))


class ClassificationDataModule(ResumableOrder, L.LightningDataModule):
    """Train and validation loaders of a class-per-folder tree or of COCO object crops.

    Args:
        source: ``folder`` or ``crops``.
        train_root, val_root: class folder trees (``source: folder``).
        train_ann, train_images, val_ann, val_images: COCO jsons and image folders (``source: crops``).
        image_size: side of the square input; each image or crop is letterboxed to it.
        min_size: smallest object cut out (``crops``), in pixels.
        context: margin added around each box, as a fraction of its longer side (``crops``).
        augment: random zoom, shift, rotation, flip and colour jitter of the training images.
    """

    def __init__(
        self,
        source: str = "folder",
        train_root: str | None = None,
        val_root: str | None = None,
        train_ann: str | None = None,
        train_images: str | None = None,
        val_ann: str | None = None,
        val_images: str | None = None,
        image_size: int = 64,
        batch_size: int = 64,
        val_batch_size: int = 128,
        num_workers: int = 0,
        cache_images: bool = True,
        min_size: float = 8.0,
        context: float = 0.15,
        augment: bool = True,
    ) -> None:
        super().__init__()
        if source not in ("folder", "crops"):
            raise ValueError(f"data.source must be 'folder' or 'crops', got {source!r}")
        self.source = source
        self.roots = {"train": train_root, "val": val_root}
        self.coco = {"train": (train_ann, train_images), "val": (val_ann, val_images)}
        self.image_size = image_size
        self.batch_size, self.val_batch_size = batch_size, val_batch_size
        self.num_workers = num_workers
        self.cache_images = cache_images
        self.min_size, self.context = min_size, context
        self.augment = augment
        self._samples: dict[str, list[ClassSample]] = {}
        self._categories: list[dict[str, Any]] | None = None
        self.train_set: ClassificationSet | None = None
        self.val_set: ClassificationSet | None = None

    def _load(self, split: str) -> list[ClassSample]:
        if split not in self._samples:
            if self.source == "folder":
                if not self.roots[split]:
                    raise ValueError(f"data.{split}_root is not set (source: folder)")
                known = [c["name"] for c in self._categories] if self._categories else None
                samples, categories = folder_samples(self.roots[split], known)
            else:
                ann, images = self.coco[split]
                if not ann or not images:
                    raise ValueError(f"data.{split}_ann and data.{split}_images must be set (source: crops)")
                samples, categories = coco_crops(ann, images, self.min_size, self.context)
            if self._categories is None:
                self._categories = categories
            elif [c["name"] for c in categories] != [c["name"] for c in self._categories]:
                raise ValueError(
                    f"data: the {split} classes ({', '.join(c['name'] for c in categories)}) differ from "
                    f"the training classes ({', '.join(c['name'] for c in self._categories)})"
                )
            self._samples[split] = samples
        return self._samples[split]

    @property
    def categories(self) -> list[dict[str, Any]]:
        """``[{"id", "name"}]`` in label order, from the training source."""
        self._load("train")
        assert self._categories is not None
        return self._categories

    def setup(self, stage: str | None = None) -> None:
        if stage in (None, "fit") and self.train_set is None:
            self.train_set = ClassificationSet(
                self._load("train"), self.image_size, self.augment, self.cache_images
            )
        if self.val_set is None:
            self.val_set = ClassificationSet(self._load("val"), self.image_size, False, self.cache_images)

    def _loader(self, dataset: Dataset, batch_size: int, sampler: Sampler | None = None) -> DataLoader:
        return DataLoader(
            dataset,
            batch_size=batch_size,
            sampler=sampler,
            num_workers=self.num_workers,
            collate_fn=collate_classes,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, self.batch_size, self.train_sampler(self.train_set))

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, self.val_batch_size)


class ShapesCropsDataModule(ClassificationDataModule):
    """Object crops of a generated shapes set (any style): a classification set with no download.

    Args:
        root: where the shapes set lives (generated there on first use).
        synthetic: :class:`~detect.data.synthetic.ShapesConfig` fields.
        **kwargs: :class:`ClassificationDataModule` arguments (``source`` is ``crops``).
    """

    def __init__(self, root: str, synthetic: dict[str, Any] | None = None, **kwargs: Any) -> None:
        root_path = ensure_shapes(root, ShapesConfig(**(synthetic or {})))
        kwargs.update(
            source="crops",
            train_ann=str(root_path / "annotations" / "instances_train.json"),
            train_images=str(root_path / "images" / "train"),
            val_ann=str(root_path / "annotations" / "instances_val.json"),
            val_images=str(root_path / "images" / "val"),
        )
        super().__init__(**kwargs)
