"""A COCO json's images and annotations held in flat NumPy arrays.

A loader worker forked from the main process shares its memory until it writes to it, and Python
writes to every object it touches (reference counts) and every container its garbage collector
visits. Held as pycocotools' dicts, COCO train2017's 860k annotations are millions of objects that
each worker ends up copying; held as a few dozen arrays, they stay shared.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

__all__ = ["AnnotationIndex"]


@dataclass
class AnnotationIndex:
    """Images (in ``image_ids`` order) and their annotations, grouped by image.

    Annotations of image ``i`` are rows ``ann_start[i]:ann_start[i + 1]`` of the annotation arrays.
    Polygons are one float array of ``x, y`` pairs with offsets per polygon and per annotation;
    RLE segmentations (crowds, mostly) are kept as json text.
    """

    image_ids: np.ndarray  # (I,) int64
    file_names: np.ndarray  # (I,) bytes, utf-8
    widths: np.ndarray  # (I,) int32, 0 when the json gives none
    heights: np.ndarray  # (I,) int32
    ann_start: np.ndarray  # (I + 1,) int64
    boxes: np.ndarray  # (A, 4) float64 COCO xywh (the json's values, exactly)
    category_ids: np.ndarray  # (A,) int64
    iscrowd: np.ndarray  # (A,) bool
    areas: np.ndarray  # (A,) float64
    poly_start: np.ndarray  # (A + 1,) int64 into polygon_start
    polygon_start: np.ndarray  # (P + 1,) int64 into points
    points: np.ndarray  # (N, 2) float64 (COCO's own precision, for exact masks)
    rle_row: np.ndarray  # (A,) int32 into rle_start, -1 when the annotation has no RLE
    rle_start: np.ndarray  # (R + 1,) int64 into rle_text
    rle_text: np.ndarray  # (bytes,) uint8: json of each RLE
    keypoint_row: np.ndarray  # (A,) int32 into keypoints, -1 when the annotation has none
    keypoints: np.ndarray  # (K_ann, K, 3) float32

    @classmethod
    def build(cls, content: dict, image_ids: list[int], num_keypoints: int = 0) -> AnnotationIndex:
        """From a json already checked by the data doctor; ``image_ids`` fixes the image order."""
        position = {image_id: i for i, image_id in enumerate(image_ids)}
        images = {image["id"]: image for image in content["images"]}
        per_image: list[list[dict]] = [[] for _ in image_ids]
        for ann in content.get("annotations", []):
            slot = position.get(ann["image_id"])
            if slot is not None:
                per_image[slot].append(ann)
        counts = np.fromiter((len(anns) for anns in per_image), np.int64, len(per_image))
        ann_start = np.zeros(len(image_ids) + 1, np.int64)
        np.cumsum(counts, out=ann_start[1:])
        total = int(ann_start[-1])
        boxes = np.zeros((total, 4), np.float64)
        category_ids = np.zeros(total, np.int64)
        iscrowd = np.zeros(total, bool)
        areas = np.zeros(total, np.float64)
        poly_counts = np.zeros(total, np.int64)
        polygon_lengths: list[int] = []
        point_chunks: list[np.ndarray] = []
        rle_row = np.full(total, -1, np.int32)
        rle_texts: list[bytes] = []
        keypoint_row = np.full(total, -1, np.int32)
        keypoint_rows: list[list[float]] = []
        row = 0
        for anns in per_image:
            for ann in anns:
                boxes[row] = ann["bbox"]
                category_ids[row] = ann["category_id"]
                iscrowd[row] = bool(ann.get("iscrowd", 0))
                areas[row] = ann.get("area", 0.0)
                segmentation = ann.get("segmentation")
                if isinstance(segmentation, list):
                    for polygon in segmentation:
                        polygon_lengths.append(len(polygon) // 2)
                        point_chunks.append(np.asarray(polygon[: len(polygon) // 2 * 2], np.float64))
                    poly_counts[row] = len(segmentation)
                elif isinstance(segmentation, dict):
                    rle_row[row] = len(rle_texts)
                    rle_texts.append(json.dumps(segmentation).encode())
                values = ann.get("keypoints")
                if num_keypoints and values and len(values) == 3 * num_keypoints:
                    keypoint_row[row] = len(keypoint_rows)
                    keypoint_rows.append(values)
                row += 1
        poly_start = np.zeros(total + 1, np.int64)
        np.cumsum(poly_counts, out=poly_start[1:])
        polygon_start = np.zeros(len(polygon_lengths) + 1, np.int64)
        np.cumsum(np.asarray(polygon_lengths, np.int64), out=polygon_start[1:])
        points = np.concatenate(point_chunks).reshape(-1, 2) if point_chunks else np.zeros((0, 2))
        rle_start = np.zeros(len(rle_texts) + 1, np.int64)
        np.cumsum([len(text) for text in rle_texts], out=rle_start[1:])
        return cls(
            image_ids=np.asarray(image_ids, np.int64),
            file_names=np.asarray([str(images[i]["file_name"]).encode() for i in image_ids], dtype=bytes),
            widths=np.asarray([images[i].get("width") or 0 for i in image_ids], np.int32),
            heights=np.asarray([images[i].get("height") or 0 for i in image_ids], np.int32),
            ann_start=ann_start,
            boxes=boxes,
            category_ids=category_ids,
            iscrowd=iscrowd,
            areas=areas,
            poly_start=poly_start,
            polygon_start=polygon_start,
            points=points,
            rle_row=rle_row,
            rle_start=rle_start,
            rle_text=np.frombuffer(b"".join(rle_texts), np.uint8).copy(),
            keypoint_row=keypoint_row,
            keypoints=np.asarray(keypoint_rows, np.float32).reshape(len(keypoint_rows), num_keypoints, 3),
        )

    def __len__(self) -> int:
        return len(self.image_ids)

    def file_name(self, i: int) -> str:
        return self.file_names[i].decode()

    def rows(self, i: int) -> range:
        """The annotation rows of image ``i``."""
        return range(int(self.ann_start[i]), int(self.ann_start[i + 1]))

    def segmentation(self, row: int) -> list | dict | None:
        """Annotation ``row``'s segmentation in COCO's own form (polygon lists or an RLE dict)."""
        if self.rle_row[row] >= 0:
            start, end = self.rle_start[self.rle_row[row]], self.rle_start[self.rle_row[row] + 1]
            return json.loads(self.rle_text[start:end].tobytes())
        first, last = self.poly_start[row], self.poly_start[row + 1]
        if first == last:
            return None
        return [
            self.points[self.polygon_start[p] : self.polygon_start[p + 1]].reshape(-1).tolist()
            for p in range(first, last)
        ]

    def keypoints_of(self, row: int) -> np.ndarray | None:
        """Annotation ``row``'s ``(K, 3)`` keypoints, or None."""
        return None if self.keypoint_row[row] < 0 else self.keypoints[self.keypoint_row[row]]

    @property
    def nbytes(self) -> int:
        return sum(value.nbytes for value in vars(self).values() if isinstance(value, np.ndarray))
