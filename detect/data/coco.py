"""COCO-format detection dataset: json + image folder in, letterboxed tensors and typed targets out.

This is the only module (with ``detect/eval/coco.py``) that sees COCO ``xywh`` boxes.
"""

from __future__ import annotations

import contextlib
import io
import logging
from dataclasses import dataclass
from pathlib import Path

import albumentations as A
import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from pycocotools.coco import COCO
from torch.utils.data import Dataset

from detect.data.transforms import letterbox_params
from detect.structures import ImageMeta, Targets

__all__ = ["CategoryMap", "CocoDetection", "Sample", "load_coco", "read_image"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CategoryMap:
    """Contiguous class indices <-> dataset category ids (any ints, gaps allowed) and names."""

    ids: tuple[int, ...]
    names: tuple[str, ...]

    @classmethod
    def from_coco(cls, categories: list[dict]) -> CategoryMap:
        ordered = sorted(categories, key=lambda category: category["id"])
        return cls(tuple(c["id"] for c in ordered), tuple(str(c["name"]) for c in ordered))

    @classmethod
    def from_list(cls, categories: list[dict]) -> CategoryMap:
        return cls(tuple(c["id"] for c in categories), tuple(str(c["name"]) for c in categories))

    def to_list(self) -> list[dict]:
        return [{"id": id_, "name": name} for id_, name in zip(self.ids, self.names)]

    def __len__(self) -> int:
        return len(self.ids)

    def index(self, category_id: int) -> int:
        return self._lookup[category_id]

    @property
    def _lookup(self) -> dict[int, int]:
        return {id_: index for index, id_ in enumerate(self.ids)}


@dataclass
class Sample:
    """One transformed image with its targets."""

    image: torch.Tensor
    targets: Targets
    meta: ImageMeta


def load_coco(ann_file: str | Path) -> COCO:
    """Load a COCO json quietly, with a one-line error when the file is missing or malformed."""
    ann_file = Path(ann_file)
    if not ann_file.is_file():
        raise FileNotFoundError(f"annotation file not found: {ann_file}")
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            coco = COCO(str(ann_file))
    except (ValueError, KeyError, TypeError, AssertionError) as error:
        raise ValueError(f"{ann_file} is not a valid COCO annotation file: {error!r}") from error
    for key in ("images", "categories"):
        if key not in coco.dataset:
            raise ValueError(f"{ann_file} has no {key!r} list")
    return coco


def read_image(path: str | Path) -> np.ndarray:
    """Read any image as RGB ``(H, W, 3)`` uint8, applying its EXIF orientation."""
    with Image.open(path) as image:
        image = ImageOps.exif_transpose(image)
        return np.asarray(image.convert("RGB"))


class CocoDetection(Dataset):
    """Images and boxes of one COCO json.

    Args:
        ann_file: COCO instances json.
        image_dir: folder the json's ``file_name`` entries are relative to.
        transform: albumentations pipeline from :func:`detect.data.transforms.build_transforms`.
        image_size: the side the pipeline letterboxes to (to record how to map predictions back).
        categories: class map to use; defaults to the json's own categories, sorted by id.
        missing_images: ``"skip"`` (log and drop images absent or unreadable on disk) or ``"error"``.
        cache_images: decode every image once and keep it in memory.
    """

    def __init__(
        self,
        ann_file: str | Path,
        image_dir: str | Path,
        transform: A.Compose,
        image_size: int,
        categories: CategoryMap | None = None,
        missing_images: str = "skip",
        cache_images: bool = False,
    ) -> None:
        if missing_images not in ("skip", "error"):
            raise ValueError(f"missing_images must be 'skip' or 'error', got {missing_images!r}")
        self.image_dir = Path(image_dir)
        if not self.image_dir.is_dir():
            raise FileNotFoundError(f"image folder not found: {self.image_dir}")
        self.coco = load_coco(ann_file)
        self.ann_file = Path(ann_file)
        self.categories = categories or CategoryMap.from_coco(self.coco.dataset["categories"])
        self.transform = transform
        self.image_size = image_size
        self.missing_images = missing_images
        self.image_ids = self._check_images(sorted(self.coco.imgs))
        self._index = self.categories._lookup
        self._cache: dict[int, np.ndarray] = {}
        if cache_images:
            for image_id in self.image_ids:
                self._cache[image_id] = self._read(image_id)

    def _check_images(self, image_ids: list[int]) -> list[int]:
        kept, bad = [], []
        for image_id in image_ids:
            path = self.image_dir / self.coco.imgs[image_id]["file_name"]
            try:
                with Image.open(path):
                    pass
            except (FileNotFoundError, UnidentifiedImageError, OSError) as error:
                bad.append((image_id, path, error))
                continue
            kept.append(image_id)
        if bad:
            listed = "; ".join(f"id {image_id}: {path} ({type(err).__name__})" for image_id, path, err in bad[:5])
            message = f"{len(bad)} of {len(image_ids)} images in {self.ann_file} are missing or unreadable: {listed}"
            if self.missing_images == "error":
                raise FileNotFoundError(message + " (set data.missing_images=skip to skip them)")
            log.warning("%s%s; skipped", message, " ..." if len(bad) > 5 else "")
        return kept

    def _read(self, image_id: int) -> np.ndarray:
        path = self.image_dir / self.coco.imgs[image_id]["file_name"]
        try:
            return read_image(path)
        except (OSError, UnidentifiedImageError) as error:
            raise OSError(f"cannot decode image id {image_id} at {path}: {error}") from error

    def __len__(self) -> int:
        return len(self.image_ids)

    def annotations(self, image_id: int) -> tuple[np.ndarray, np.ndarray]:
        """Non-crowd boxes ``(N, 4)`` xyxy in original pixels and their contiguous labels ``(N,)``."""
        info = self.coco.imgs[image_id]
        width, height = info.get("width"), info.get("height")
        boxes, labels = [], []
        for ann in self.coco.imgToAnns.get(image_id, []):
            if ann.get("iscrowd", 0) or ann["category_id"] not in self._index:
                continue
            x, y, w, h = ann["bbox"]
            x0, y0, x1, y1 = x, y, x + w, y + h
            if width and height:
                x0, x1 = min(max(x0, 0), width), min(max(x1, 0), width)
                y0, y1 = min(max(y0, 0), height), min(max(y1, 0), height)
            if x1 - x0 < 1 or y1 - y0 < 1:
                continue
            boxes.append((x0, y0, x1, y1))
            labels.append(self._index[ann["category_id"]])
        return np.asarray(boxes, dtype=np.float32).reshape(-1, 4), np.asarray(labels, dtype=np.int64)

    def __getitem__(self, index: int) -> Sample:
        image_id = self.image_ids[index]
        image = self._cache.get(image_id)
        if image is None:
            image = self._read(image_id)
        boxes, labels = self.annotations(image_id)
        height, width = image.shape[:2]
        boxes[:, 0::2] = boxes[:, 0::2].clip(0, width)
        boxes[:, 1::2] = boxes[:, 1::2].clip(0, height)
        out = self.transform(image=image, bboxes=boxes, labels=labels)
        scale, offset = letterbox_params(height, width, self.image_size)
        return Sample(
            image=torch.from_numpy(np.ascontiguousarray(out["image"])).permute(2, 0, 1),
            targets=Targets(
                torch.as_tensor(np.asarray(out["bboxes"], dtype=np.float32).reshape(-1, 4)),
                torch.as_tensor(np.asarray(out["labels"], dtype=np.int64).reshape(-1)),
            ),
            meta=ImageMeta(
                image_id=image_id,
                orig_size=(height, width),
                scale=scale,
                offset=offset,
                file_name=self.coco.imgs[image_id]["file_name"],
            ),
        )
