"""COCO evaluation with pycocotools: detections -> COCO results -> COCOeval metrics.

This is the only evaluation module that sees COCO ``xywh`` boxes.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
from pathlib import Path

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from detect.structures import Detections

__all__ = ["CocoEvaluator", "detections_to_coco", "evaluate_results"]

_STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")


def detections_to_coco(image_id: int, detections: Detections, category_ids: tuple[int, ...]) -> list[dict]:
    """COCO results entries for one image's detections, already in original-image pixels."""
    boxes = detections.boxes.detach().cpu().double().numpy()
    scores = detections.scores.detach().cpu().double().numpy()
    labels = detections.labels.detach().cpu().numpy()
    results = []
    for (x0, y0, x1, y1), score, label in zip(boxes, scores, labels):
        results.append(
            {
                "image_id": image_id,
                "category_id": category_ids[int(label)],
                "bbox": [float(x0), float(y0), float(x1 - x0), float(y1 - y0)],
                "score": float(score),
            }
        )
    return results


def evaluate_results(
    coco_gt: COCO, results: list[dict], iou_type: str = "bbox", image_ids: list[int] | None = None
) -> dict[str, float]:
    """Run COCOeval on ``results`` (COCO results format) and return flat metrics.

    Keys are ``"{iou_type}/AP"``, ``/AP50`` ... ``/ARl`` plus ``"{iou_type}/AP/{category name}"``.
    ``image_ids`` restricts scoring to the images that were predicted on (all by default). With no
    results every metric is 0.
    """
    names = {c["id"]: c["name"] for c in coco_gt.dataset["categories"]}
    if not results:
        metrics = {f"{iou_type}/{name}": 0.0 for name in _STAT_NAMES}
        metrics.update({f"{iou_type}/AP/{name}": 0.0 for name in names.values()})
        return metrics
    with contextlib.redirect_stdout(io.StringIO()):
        coco_dt = coco_gt.loadRes(copy.deepcopy(results))
        evaluator = COCOeval(coco_gt, coco_dt, iou_type)
        if image_ids is not None:
            evaluator.params.imgIds = sorted(image_ids)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    # pycocotools reports -1 for a size range without ground truth; that convention is kept.
    metrics = {f"{iou_type}/{name}": float(value) for name, value in zip(_STAT_NAMES, evaluator.stats)}
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
    """

    def __init__(self, coco_gt: COCO, category_ids: tuple[int, ...]) -> None:
        self.coco_gt = coco_gt
        self.category_ids = tuple(category_ids)
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
        return evaluate_results(self.coco_gt, self.results, "bbox", sorted(self.seen))

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.results))
