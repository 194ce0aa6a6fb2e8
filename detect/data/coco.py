"""COCO-format detection dataset: json + image folder in, letterboxed tensors and typed targets out.

This is the only module (with ``detect/eval/coco.py``) that sees COCO ``xywh`` boxes.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import albumentations as A
import numpy as np
import torch
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from torch.utils.data import Dataset

from detect.data.copy_paste import Donor, paste_object
from detect.data.doctor import DataError, FaultLog, check_coco, read_coco_json
from detect.data.images import ImageFault, probe_image, read_image
from detect.data.index import AnnotationIndex
from detect.data.sampler import SampleKey, generator_for
from detect.data.transforms import letterbox_params
from detect.structures import ImageMeta, KeypointInfo, Targets

__all__ = [
    "CategoryMap",
    "CocoDetection",
    "Sample",
    "cache_fits",
    "load_coco",
    "read_image",
    "segmentation_to_mask",
]


log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CategoryMap:
    """Contiguous class indices <-> dataset category ids (any ints, gaps allowed), names and keypoints."""

    ids: tuple[int, ...]
    names: tuple[str, ...]
    keypoints: KeypointInfo | None = None
    skeletons: tuple[tuple[tuple[int, int], ...], ...] = field(default=(), compare=False)

    @classmethod
    def from_coco(cls, categories: list[dict], keypoint_sigma: float = 0.07) -> CategoryMap:
        """From a json's categories, sorted by id."""
        return cls.from_list(sorted(categories, key=lambda category: category["id"]), keypoint_sigma)

    @classmethod
    def from_list(cls, categories: list[dict], keypoint_sigma: float = 0.07) -> CategoryMap:
        """From categories already in contiguous-label order (as :meth:`to_list` writes them)."""
        seen = set()
        for category in categories:
            if "id" not in category or "name" not in category:
                raise ValueError(f"every category needs an id and a name, got {category}")
            if category["id"] in seen:
                raise ValueError(f"category id {category['id']} appears twice")
            seen.add(category["id"])
        return cls(
            tuple(c["id"] for c in categories),
            tuple(str(c["name"]) for c in categories),
            KeypointInfo.from_categories(categories, keypoint_sigma),
        )

    def to_list(self) -> list[dict]:
        """JSON-ready categories, keypoint names and skeleton included where they exist."""
        entries = []
        for id_, name in zip(self.ids, self.names):
            entry: dict = {"id": id_, "name": name}
            if self.keypoints is not None and id_ in self.keypoints.category_ids:
                entry["keypoints"] = list(self.keypoints.names)
                entry["skeleton"] = [list(pair) for pair in self.keypoints.skeleton]
                entry["keypoint_sigmas"] = list(self.keypoints.sigmas)
            entries.append(entry)
        return entries

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


def load_coco(ann_file: str | Path, faults: FaultLog | None = None) -> COCO:
    """Load a COCO json through the data doctor (:func:`detect.data.doctor.check_coco`).

    What cannot be used is left out or mended and recorded in ``faults``; a file with nothing
    sensible to train on raises a one-line :class:`~detect.data.doctor.DataError`.
    """
    content = read_coco_json(ann_file)
    clean, _ = check_coco(content, str(ann_file), faults)
    return _coco_from(clean)


def _coco_from(content: dict) -> COCO:
    coco = COCO()
    coco.dataset = content
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def cache_fits(widths: np.ndarray, heights: np.ndarray, budget: float | None = None) -> bool:
    """Whether the decoded images (3 bytes a pixel) fit the cache budget: a quarter of the
    machine's memory, at most 8 GiB. COCO train2017 (~110 GB decoded) does not; the shapes set does."""
    if budget is None:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        budget = min(memory / 4, 8 * 2**30)
    return float(np.sum(widths.astype(np.float64) * heights * 3)) <= budget


def segmentation_to_mask(segmentation: list | dict, height: int, width: int) -> np.ndarray:
    """Rasterise COCO polygons, uncompressed or compressed RLE to an ``(H, W)`` uint8 mask."""
    if isinstance(segmentation, list):
        rle = mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))
    elif isinstance(segmentation.get("counts"), list):
        rle = mask_utils.frPyObjects(segmentation, height, width)
    else:
        rle = segmentation
    return mask_utils.decode(rle).astype(np.uint8)


class CocoDetection(Dataset):
    """Images and boxes of one COCO json, checked by the data doctor on the way in.

    The json is checked as a whole when the dataset is built (as :func:`load_coco` does), each image's
    header too (missing, empty, not an image, EXIF orientation, mode, size against the json);
    a file truncated or corrupt past its header is found when it is first decoded, then skipped
    and named (``__getitem__`` returns ``None``, which :func:`detect.data.collate.collate` drops).
    One warning per fault kind names the count and the first ids.

    Annotations are held in flat arrays (:class:`~detect.data.index.AnnotationIndex`), so that
    loader workers share them instead of copying them; pycocotools' ``COCO`` of the clean json
    (``.coco``, for the evaluator) is built on first use.

    Args:
        ann_file: COCO instances json.
        image_dir: folder the json's ``file_name`` entries are relative to.
        transform: albumentations pipeline from :func:`detect.data.transforms.build_transforms`.
        image_size: the side the pipeline letterboxes to (to record how to map predictions back).
        categories: class map to use; defaults to the json's own categories, sorted by id.
        missing_images: ``"skip"`` (log and drop images absent or unreadable on disk) or ``"error"``.
        cache_images: decode every image once and keep it in memory; ``"auto"``: when they fit in a
            quarter of the memory (at most 8 GiB), see :func:`cache_fits`.
        hflip: probability of a horizontal flip (keypoints swap sides using their names).
        load_masks: also return instance masks (from polygons or RLE, via pycocotools).
        load_keypoints: also return keypoints (for categories that declare them).
        strict: every skipped image or annotation is an error instead (mends stay mends).
        keypoint_sigma: OKS sigma for the json's own keypoints (when ``categories`` is not given).
        copy_paste: probability that objects of other training images are pasted into an image
            (:mod:`detect.data.copy_paste`), before the pipeline.
        copy_paste_objects: objects drawn from the whole training set for each paste; those
            that find free space are pasted.
        copy_paste_classes: which objects may be pasted: ``None`` any, ``"keypoints"`` those with
            labelled keypoints, or a list of class names.
    """

    def __init__(
        self,
        ann_file: str | Path,
        image_dir: str | Path,
        transform: A.Compose,
        image_size: int,
        categories: CategoryMap | None = None,
        missing_images: str = "skip",
        cache_images: bool | str = False,
        hflip: float = 0.0,
        load_masks: bool = False,
        load_keypoints: bool = False,
        strict: bool = False,
        keypoint_sigma: float = 0.07,
        copy_paste: float = 0.0,
        copy_paste_objects: int = 3,
        copy_paste_classes: str | list[str] | None = None,
    ) -> None:
        if missing_images not in ("skip", "error"):
            raise ValueError(f"missing_images must be 'skip' or 'error', got {missing_images!r}")
        self.image_dir = Path(image_dir)
        if not self.image_dir.is_dir():
            raise FileNotFoundError(f"image folder not found: {self.image_dir}")
        self.ann_file = Path(ann_file)
        self.faults = FaultLog(str(self.ann_file))
        self.strict = strict
        clean, _ = check_coco(read_coco_json(ann_file), str(self.ann_file), self.faults)
        if strict:
            self.faults.raise_if_strict()
        self.categories = categories or CategoryMap.from_coco(clean["categories"], keypoint_sigma)
        self.transform = transform
        self.image_size = image_size
        self.missing_images = missing_images
        self.hflip = hflip
        self.load_masks = load_masks
        self.load_keypoints = load_keypoints
        self.keypoint_info = self.categories.keypoints
        images = {image["id"]: image for image in clean["images"]}
        image_ids = self._check_images(sorted(images), images)
        self._index = self.categories._lookup
        self._cache: dict[int, np.ndarray] = {}
        self._unreadable: set[int] = set()
        self.index = AnnotationIndex.build(clean, image_ids, len(self.keypoint_info or ()))
        del clean, images  # the arrays hold what is needed; .coco rebuilds the rest on demand
        if cache_images == "auto":
            cache_images = cache_fits(self.index.widths, self.index.heights)
            log.info(
                "%s: %s decoded images in memory",
                self.ann_file.name,
                "caching" if cache_images else "not caching",
            )
        if cache_images:
            for position, image_id in enumerate(image_ids):
                try:
                    self._cache[image_id] = self._read(position)
                except ImageFault as fault:
                    self.faults.add(fault.kind, image_id, f"{fault.path}: {fault.detail}")
            if len(self._cache) < len(image_ids):
                image_ids = [image_id for image_id in image_ids if image_id in self._cache]
                self.index = AnnotationIndex.build(
                    self._clean_json(), image_ids, len(self.keypoint_info or ())
                )
        self.image_ids = image_ids
        self.copy_paste, self.copy_paste_objects = copy_paste, copy_paste_objects
        self.copy_paste_classes = copy_paste_classes
        self._paste_labels = self._paste_labels_of(copy_paste_classes)
        self._paste_positions, self._paste_rows = self._pasteable() if copy_paste > 0 else (None, None)
        self.faults.warn(log)
        if strict:
            self.faults.raise_if_strict()
        if not self.image_ids:
            raise DataError(f"{self.ann_file}: no usable image left ({self._listed} listed, all skipped)")

    def _clean_json(self) -> dict:
        """The json as the data doctor cleaned it, with the image sizes read from the files."""
        clean, _ = check_coco(read_coco_json(self.ann_file), str(self.ann_file), FaultLog(str(self.ann_file)))
        sizes = dict(
            zip(self.index.image_ids.tolist(), zip(self.index.widths.tolist(), self.index.heights.tolist()))
        )
        for image in clean["images"]:
            if image["id"] in sizes:
                image["width"], image["height"] = sizes[image["id"]]
        return clean

    @cached_property
    def coco(self) -> COCO:
        """pycocotools' index of the clean json, for the evaluator: built on first use (in the
        main process; the loader workers use the arrays)."""
        return _coco_from(self._clean_json())

    def image_path(self, image_id: int) -> Path:
        return self.image_dir / self.index.file_name(self.image_ids.index(image_id))

    def _check_header(self, image_id: int, info: dict) -> None:
        """The header only (size, mode, EXIF orientation): cheap enough for every image at load."""
        path = self.image_dir / info["file_name"]
        header = probe_image(path)
        if header.orientation not in (0, 1):
            self.faults.add("image_exif_rotated", image_id, f"{path.name}: orientation {header.orientation}")
        if header.mode != "RGB":
            self.faults.add("image_mode", image_id, f"{path.name}: {header.mode}")
        size = (header.width, header.height)
        if "width" in info and "height" in info and (info["width"], info["height"]) != size:
            self.faults.add(
                "image_size_mismatch",
                image_id,
                f"{path.name}: json {info['width']}x{info['height']}, file {size[0]}x{size[1]}",
            )
        info["width"], info["height"] = size

    def _check_images(self, image_ids: list[int], images: dict[int, dict]) -> list[int]:
        self._listed = len(image_ids)
        kept, bad = [], []
        for image_id in image_ids:
            try:
                self._check_header(image_id, images[image_id])
            except ImageFault as fault:
                self.faults.add(fault.kind, image_id, f"{fault.path}: {fault.detail}")
                bad.append((image_id, fault))
                continue
            kept.append(image_id)
        if bad and self.missing_images == "error":
            image_id, fault = bad[0]
            raise FileNotFoundError(
                f"{len(bad)} of {len(image_ids)} images in {self.ann_file} are missing or unreadable, "
                f"first id {image_id}: {fault} (set data.missing_images=skip to skip them)"
            )
        return kept

    def _read(self, position: int) -> np.ndarray:
        return read_image(self.image_dir / self.index.file_name(position))

    def __len__(self) -> int:
        return len(self.index)

    def annotations(self, position: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Image ``position``'s non-crowd boxes ``(N, 4)`` xyxy in original pixels, their contiguous
        labels ``(N,)`` and their annotation rows in :attr:`index`."""
        index = self.index
        rows = np.arange(index.ann_start[position], index.ann_start[position + 1])
        known = np.asarray([category in self._index for category in index.category_ids[rows].tolist()], bool)
        rows = rows[~index.iscrowd[rows] & known.reshape(-1)]
        x, y, w, h = index.boxes[rows].T
        boxes = np.stack([x, y, x + w, y + h], axis=1).reshape(-1, 4)
        width, height = int(index.widths[position]), int(index.heights[position])
        if width and height:
            boxes[:, 0::2] = boxes[:, 0::2].clip(0, width)
            boxes[:, 1::2] = boxes[:, 1::2].clip(0, height)
        keep = ((boxes[:, 2] - boxes[:, 0]) >= 1) & ((boxes[:, 3] - boxes[:, 1]) >= 1)
        rows = rows[keep]
        labels = np.asarray([self._index[c] for c in index.category_ids[rows].tolist()], np.int64)
        return boxes[keep].astype(np.float32), labels, rows

    def _masks(self, rows: np.ndarray, height: int, width: int) -> list[np.ndarray]:
        masks = []
        for row in rows.tolist():
            segmentation = self.index.segmentation(row)
            if segmentation:
                masks.append(segmentation_to_mask(segmentation, height, width))
            else:  # a box-only annotation: its box is the best mask we have
                mask = np.zeros((height, width), np.uint8)
                x, y, w, h = (int(round(v)) for v in self.index.boxes[row].tolist())
                mask[y : y + h, x : x + w] = 1
                masks.append(mask)
        return masks

    def _keypoints(self, rows: np.ndarray) -> np.ndarray:
        count = len(self.keypoint_info) if self.keypoint_info else 0
        keypoints = np.zeros((len(rows), count, 3), np.float32)
        for i, row in enumerate(rows.tolist()):
            values = self.index.keypoints_of(row)
            if values is not None:
                keypoints[i] = values
        return keypoints

    def _fills(self, rows: np.ndarray) -> np.ndarray:
        """Each annotation's segment area over its box area (1 where the json gives no area):
        COCO's area is the segment's, and this share of the box is carried through every
        geometric change."""
        box_areas = self.index.boxes[rows, 2] * self.index.boxes[rows, 3]
        fill = np.minimum(self.index.areas[rows] / np.maximum(box_areas, 1e-6), 1.0)
        return np.where(fill > 0, fill, 1.0).astype(np.float32).reshape(-1)

    def _paste_labels_of(self, classes: str | list[str] | None) -> np.ndarray | None:
        """The labels copy-paste may take (``None``: any; ``"keypoints"`` is resolved per object)."""
        if classes is None or classes == "keypoints":
            return None
        if isinstance(classes, str):
            classes = [classes]
        unknown = [name for name in classes if name not in self.categories.names]
        if unknown:
            raise ValueError(
                f"data.augment.copy_paste_classes: {unknown} not among the classes {list(self.categories.names)}"
            )
        return np.asarray([self.categories.names.index(name) for name in classes], np.int64)

    def _pasteable(self) -> tuple[np.ndarray, np.ndarray]:
        """Image positions and annotation rows of every object copy-paste may take (from the
        index's arrays: COCO train2017's 860k annotations in a fraction of a second)."""
        index = self.index
        positions = np.repeat(np.arange(len(index)), np.diff(index.ann_start))
        allowed = self.categories.ids
        if self._paste_labels is not None:
            allowed = [self.categories.ids[label] for label in self._paste_labels.tolist()]
        keep = ~index.iscrowd & np.isin(index.category_ids, allowed)
        keep &= (index.boxes[:, 2] >= 1) & (index.boxes[:, 3] >= 1)
        if self.copy_paste_classes == "keypoints":
            labelled = np.zeros(len(keep), bool)
            has = index.keypoint_row >= 0
            if len(index.keypoints) and index.keypoints.shape[1]:
                labelled[has] = index.keypoints[index.keypoint_row[has], :, 2].max(axis=1) > 0
            keep &= labelled
        rows = np.flatnonzero(keep)
        return positions[rows], rows

    def _donor(self, pick: int) -> Donor | None:
        """Pasteable object ``pick`` with its image (``None``: an unreadable image, named when it
        comes up in the epoch itself)."""
        position, row = int(self._paste_positions[pick]), int(self._paste_rows[pick])
        image = self._cache.get(int(self.index.image_ids[position]))
        if image is None:
            try:
                image = self._read(position)
            except ImageFault:
                return None
        boxes, labels, rows = self.annotations(position)
        keep = np.flatnonzero(rows == row)
        if not len(keep):  # too thin once clipped to its image
            return None
        height, width = image.shape[:2]
        return Donor(
            image=image,
            mask=self._masks(rows[keep], height, width)[0],
            box=boxes[keep[0]],
            label=int(labels[keep[0]]),
            fill=float(self._fills(rows[keep])[0]),
            keypoints=self._keypoints(rows[keep])[0] if self.load_keypoints else None,
        )

    def _paste(
        self,
        image: np.ndarray,
        boxes: np.ndarray,
        labels: np.ndarray,
        fills: np.ndarray,
        keypoints: np.ndarray | None,
        masks: list[np.ndarray] | None,
        generator: torch.Generator | None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray | None, list[np.ndarray] | None]:
        """Copy-paste (:func:`detect.data.copy_paste.paste_object`) of ``copy_paste_objects``
        objects drawn from the whole training set onto a copy of ``image``; the pasted objects'
        boxes, labels, fills, keypoints and masks are appended to the image's."""
        if len(self._paste_rows) == 0:
            return image, boxes, labels, fills, keypoints, masks
        image = image.copy()  # the cached image stays as read
        draws = torch.randint(0, len(self._paste_rows), (self.copy_paste_objects,), generator=generator)
        for pick in draws.tolist():
            donor = self._donor(pick)
            pasted = None if donor is None else paste_object(image, boxes, donor, generator)
            if pasted is None:
                continue
            shift, mask = np.asarray(pasted[0], np.float32), pasted[1]
            boxes = np.concatenate([boxes, (donor.box + np.tile(shift, 2))[None]]).astype(np.float32)
            labels = np.append(labels, donor.label)
            fills = np.append(fills, np.float32(donor.fill))
            if keypoints is not None:
                moved = donor.keypoints.copy()
                labelled = moved[:, 2:] > 0
                moved[:, :2] = np.where(labelled, moved[:, :2] + shift, 0)
                keypoints = np.concatenate([keypoints, moved[None]])
            if masks is not None:
                masks = [*masks, mask]
        return image, boxes, labels, fills, keypoints, masks

    def __getitem__(self, key: int | SampleKey) -> Sample | None:
        position, generator = generator_for(key)
        image_id = int(self.index.image_ids[position])
        image = self._cache.get(image_id)
        if image is None:
            try:
                image = self._read(position)
            except ImageFault as fault:
                if self.strict or self.missing_images == "error":
                    raise DataError(f"image id {image_id}: {fault} (data.strict=true)") from None
                if image_id not in self._unreadable:
                    self._unreadable.add(image_id)
                    log.warning("skipping image id %d (%s): %s", image_id, fault.kind, fault)
                return None
        boxes, labels, rows = self.annotations(position)
        height, width = image.shape[:2]
        boxes[:, 0::2] = boxes[:, 0::2].clip(0, width)
        boxes[:, 1::2] = boxes[:, 1::2].clip(0, height)
        keypoints = self._keypoints(rows) if self.load_keypoints else None
        masks = self._masks(rows, height, width) if self.load_masks else None
        fills = self._fills(rows)
        if self.copy_paste > 0 and torch.rand((), generator=generator).item() < self.copy_paste:
            image, boxes, labels, fills, keypoints, masks = self._paste(
                image, boxes, labels, fills, keypoints, masks, generator
            )
        inputs = {"image": image, "bboxes": boxes, "labels": labels, "instances": np.arange(len(boxes))}
        inputs["keypoints"] = (
            np.zeros((0, 2), np.float32) if keypoints is None else keypoints[..., :2].reshape(-1, 2)
        )
        if masks:
            inputs["masks"] = masks
        # Albumentations draws from its own generators, seeded from the OS unless told otherwise:
        # reseeding them per sample from the sample's own generator (see detect.data.sampler) makes
        # runs repeat with the seed, whatever the loader workers, and a resumed run draw as the
        # original did.
        self.transform.set_random_seed(int(torch.randint(0, 2**31 - 1, (), generator=generator).item()))
        out = self.transform(**inputs)
        kept = np.asarray(out["instances"], dtype=np.int64)
        image_out = out["image"]
        boxes_out = np.asarray(out["bboxes"], dtype=np.float32).reshape(-1, 4)
        masks_out = None
        if self.load_masks:
            masks_out = (
                np.stack(out["masks"])[kept] if masks else np.zeros((0, *image_out.shape[:2]), np.uint8)
            )
        keypoints_out = None
        if keypoints is not None:
            keypoints_out = np.asarray(out["keypoints"], np.float32).reshape(keypoints.shape[:2] + (2,))[kept]
            visibility = keypoints[kept][..., 2].copy()
            out_h, out_w = image_out.shape[:2]
            inside = (
                (keypoints_out[..., 0] >= 0)
                & (keypoints_out[..., 0] < out_w)
                & (keypoints_out[..., 1] >= 0)
                & (keypoints_out[..., 1] < out_h)
            )
            visibility[~inside] = 0
            keypoints_out = np.concatenate([keypoints_out, visibility[..., None]], axis=-1)
            keypoints_out[visibility == 0] = 0
        # COCO's area is the segment's; carry its share of the box through any geometric change.
        areas = fills[kept] * (boxes_out[:, 2] - boxes_out[:, 0]) * (boxes_out[:, 3] - boxes_out[:, 1])
        if self.hflip > 0 and torch.rand((), generator=generator).item() < self.hflip:
            image_out, boxes_out, masks_out, keypoints_out = self._flip(
                image_out, boxes_out, masks_out, keypoints_out
            )
        scale, offset = letterbox_params(height, width, self.image_size)
        return Sample(
            image=torch.from_numpy(np.ascontiguousarray(image_out)).permute(2, 0, 1),
            targets=Targets(
                torch.as_tensor(boxes_out),
                torch.as_tensor(np.asarray(out["labels"], dtype=np.int64).reshape(-1)),
                masks=None if masks_out is None else torch.from_numpy(np.ascontiguousarray(masks_out)),
                keypoints=None if keypoints_out is None else torch.from_numpy(keypoints_out),
                areas=torch.from_numpy(np.asarray(areas, np.float32).reshape(-1)),
            ),
            meta=ImageMeta(
                image_id=image_id,
                orig_size=(height, width),
                scale=scale,
                offset=offset,
                file_name=self.index.file_name(position),
            ),
        )

    def _flip(
        self, image: np.ndarray, boxes: np.ndarray, masks: np.ndarray | None, keypoints: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
        """Mirror left-right; keypoints also trade places with their mirror (left_hand <-> right_hand)."""
        width = image.shape[1]
        image = image[:, ::-1]
        boxes = boxes.copy()
        boxes[:, [0, 2]] = width - boxes[:, [2, 0]]
        if masks is not None:
            masks = masks[:, :, ::-1]
        if keypoints is not None and self.keypoint_info is not None:
            keypoints = keypoints[:, self.keypoint_info.flip_index].copy()
            visible = keypoints[..., 2] > 0
            # COCO keypoints are pixel indices (x = 0 is the centre of the first column), unlike
            # boxes, whose edges are continuous: pixel x lands on column width - 1 - x. Mirroring
            # with width - x shifted every flipped keypoint one pixel, and the model, unable to
            # tell flipped images apart, learnt half a pixel of bias on all of them.
            keypoints[..., 0] = np.where(visible, width - 1 - keypoints[..., 0], 0)
        return image, boxes, masks, keypoints
