"""COCO evaluation with pycocotools: detections -> COCO results -> COCOeval metrics (bbox, segm, keypoints).

This is the only evaluation module that sees COCO ``xywh`` boxes and RLE masks.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from detect.data.coco import segmentation_to_mask
from detect.structures import Detections, KeypointInfo

__all__ = [
    "CocoEvaluator",
    "detections_to_coco",
    "encode_masks",
    "evaluate_results",
    "results_for",
    "results_to_detections",
]

_STAT_NAMES = {
    "bbox": ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl"),
    "segm": ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl"),
    "keypoints": ("AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl"),
}


def encode_masks(masks: np.ndarray) -> list[dict]:
    """COCO compressed RLE (``counts`` as str, JSON-ready) of ``(N, H, W)`` binary masks."""
    if len(masks) == 0:
        return []
    rles = mask_utils.encode(np.asfortranarray(masks.transpose(1, 2, 0).astype(np.uint8)))
    for rle in rles:
        rle["counts"] = rle["counts"].decode("ascii")
    return rles


def detections_to_coco(image_id: int, detections: Detections, category_ids: Sequence[int]) -> list[dict]:
    """COCO results entries for one image's detections, already in original-image pixels.

    Every entry has ``bbox`` and ``score``; ``segmentation`` (RLE) and ``keypoints`` (x, y, score
    triplets) are added when the detections carry masks or keypoints.
    """
    boxes = detections.boxes.detach().cpu().double().numpy()
    scores = detections.scores.detach().cpu().double().numpy()
    labels = detections.labels.detach().cpu().numpy()
    rles = encode_masks(detections.masks.detach().cpu().numpy()) if detections.masks is not None else None
    keypoints = (
        detections.keypoints.detach().cpu().double().numpy() if detections.keypoints is not None else None
    )
    results = []
    for index, ((x0, y0, x1, y1), score, label) in enumerate(zip(boxes, scores, labels)):
        entry = {
            "image_id": image_id,
            "category_id": category_ids[int(label)],
            "bbox": [float(x0), float(y0), float(x1 - x0), float(y1 - y0)],
            "score": float(score),
        }
        if rles is not None:
            entry["segmentation"] = rles[index]
        if keypoints is not None:
            entry["keypoints"] = [float(v) for v in keypoints[index].reshape(-1)]
        results.append(entry)
    return results


def results_to_detections(
    results: list[dict], category_ids: Sequence[int], image_size: tuple[int, int] | None = None
) -> Detections:
    """The inverse of :func:`detections_to_coco` for one image's entries (bbox, segm and keypoints kept).

    ``image_size`` (height, width) is needed only to decode polygon segmentations.
    """
    index_of = {id_: i for i, id_ in enumerate(category_ids)}
    masks = None
    if results and all("segmentation" in r for r in results):
        if image_size is None:
            image_size = tuple(results[0]["segmentation"]["size"])
        masks = torch.from_numpy(
            np.stack([segmentation_to_mask(r["segmentation"], *image_size) for r in results])
        ).bool()
    boxes = []
    for index, r in enumerate(results):
        if "bbox" in r:
            x, y, w, h = r["bbox"]
        else:  # segm results may carry no box: take the mask's, as pycocotools does
            x, y, w, h = mask_utils.toBbox(encode_masks(masks[index : index + 1].numpy())[0])
        boxes.append([x, y, x + w, y + h])
    detections = Detections(
        torch.tensor(boxes, dtype=torch.float64).reshape(-1, 4),
        torch.tensor([r["score"] for r in results], dtype=torch.float64),
        torch.tensor([index_of[r["category_id"]] for r in results], dtype=torch.long),
        masks=masks,
    )
    if results and all("keypoints" in r for r in results):
        detections.keypoints = torch.tensor([r["keypoints"] for r in results], dtype=torch.float64).reshape(
            len(results), -1, 3
        )
    return detections


def results_for(results: list[dict], iou_type: str) -> list[dict]:
    """The fields COCOeval reads for ``iou_type``; dropping ``bbox`` makes loadRes take mask areas."""
    field = {"bbox": "bbox", "segm": "segmentation", "keypoints": "keypoints"}[iou_type]
    return [
        {"image_id": r["image_id"], "category_id": r["category_id"], field: r[field], "score": r["score"]}
        for r in results
        if field in r
    ]


def evaluate_results(
    coco_gt: COCO,
    results: list[dict],
    iou_type: str = "bbox",
    image_ids: list[int] | None = None,
    keypoint_sigmas: Sequence[float] | None = None,
    category_ids: Sequence[int] | None = None,
) -> dict[str, float]:
    """Run COCOeval on ``results`` (COCO results format) and return flat metrics.

    Keys are ``"{iou_type}/AP"``, ``/AP50`` ... plus ``"{iou_type}/AP/{category name}"``. pycocotools'
    -1 (nothing to score in a range) is kept; with no results at all every metric is 0.

    Args:
        coco_gt: ground truth.
        results: COCO results entries for ``iou_type``.
        iou_type: ``"bbox"``, ``"segm"`` or ``"keypoints"``.
        image_ids: restrict scoring to these images (default: all).
        keypoint_sigmas: per-keypoint OKS sigmas (default: pycocotools' COCO person values).
        category_ids: restrict scoring to these categories (default: all).
    """
    if iou_type not in _STAT_NAMES:
        raise ValueError(f"iou_type must be one of {sorted(_STAT_NAMES)}, got {iou_type!r}")
    names = {c["id"]: c["name"] for c in coco_gt.dataset["categories"]}
    if category_ids is not None:
        names = {id_: name for id_, name in names.items() if id_ in set(category_ids)}
    if not results:
        metrics = {f"{iou_type}/{name}": 0.0 for name in _STAT_NAMES[iou_type]}
        metrics.update({f"{iou_type}/AP/{name}": 0.0 for name in names.values()})
        return metrics
    with contextlib.redirect_stdout(io.StringIO()):
        coco_dt = coco_gt.loadRes(copy.deepcopy(results))
        evaluator = COCOeval(coco_gt, coco_dt, iou_type)
        if image_ids is not None:
            evaluator.params.imgIds = sorted(image_ids)
        if category_ids is not None:
            evaluator.params.catIds = sorted(category_ids)
        if keypoint_sigmas is not None:
            evaluator.params.kpt_oks_sigmas = np.asarray(keypoint_sigmas, dtype=np.float64)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    metrics = {
        f"{iou_type}/{name}": float(value) for name, value in zip(_STAT_NAMES[iou_type], evaluator.stats)
    }
    # precision: (iou thresholds, recall points, categories, area ranges, max dets); -1 marks "no ground truth".
    precision = evaluator.eval["precision"][:, :, :, 0, -1]
    for index, category_id in enumerate(evaluator.params.catIds):
        values = precision[:, :, index]
        values = values[values > -1]
        metrics[f"{iou_type}/AP/{names[category_id]}"] = float(values.mean()) if values.size else float("nan")
    return metrics


class CocoEvaluator:
    """Accumulate detections over a validation pass and score them with pycocotools.

    Args:
        coco_gt: the ground truth.
        category_ids: dataset category id of each contiguous class index.
        iou_types: what to score: ``"bbox"`` and any of ``"segm"``, ``"keypoints"``.
        keypoints: the dataset's keypoint description (sigmas and the categories that have keypoints).
    """

    def __init__(
        self,
        coco_gt: COCO,
        category_ids: Sequence[int],
        iou_types: Sequence[str] = ("bbox",),
        keypoints: KeypointInfo | None = None,
    ) -> None:
        unknown = set(iou_types) - set(_STAT_NAMES)
        if unknown:
            raise ValueError(f"unknown iou_types {sorted(unknown)}; choose from {sorted(_STAT_NAMES)}")
        if "keypoints" in iou_types and keypoints is None:
            raise ValueError("keypoint evaluation needs the dataset's keypoint description")
        self.coco_gt = coco_gt
        self.category_ids = tuple(category_ids)
        self.iou_types = tuple(iou_types)
        self.keypoints = keypoints
        self.results: list[dict] = []
        self.seen: set[int] = set()

    def reset(self) -> None:
        self.results = []
        self.seen = set()

    def update(self, image_ids: list[int], detections: list[Detections]) -> None:
        """Add detections (original-image pixels) for ``image_ids``; repeated images are ignored."""
        for image_id, image_detections in zip(image_ids, detections):
            if image_id in self.seen:
                continue
            self.seen.add(image_id)
            self.results.extend(detections_to_coco(image_id, image_detections, self.category_ids))

    def merge(self, other_results: list[list[dict]]) -> None:
        """Replace the results with the union gathered from every process, without duplicates."""
        seen, merged = set(), []
        for results in other_results:
            images = {r["image_id"] for r in results} - seen
            merged.extend(r for r in results if r["image_id"] in images)
            seen |= images
        self.results = merged

    def compute(self) -> dict[str, float]:
        metrics: dict[str, float] = {}
        image_ids = sorted(self.seen)
        for iou_type in self.iou_types:
            if iou_type == "keypoints":
                keypoint_categories = self.keypoints.category_ids
                results = [
                    r for r in results_for(self.results, iou_type) if r["category_id"] in keypoint_categories
                ]
                metrics |= evaluate_results(
                    self.coco_gt, results, iou_type, image_ids, self.keypoints.sigmas, keypoint_categories
                )
            else:
                metrics |= evaluate_results(
                    self.coco_gt, results_for(self.results, iou_type), iou_type, image_ids
                )
        return metrics

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.results))
