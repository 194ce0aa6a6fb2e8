"""The pycocotools evaluator on tiny inline data, and a peer's pinned numbers."""

import json
from pathlib import Path

import pytest
import torch
from pycocotools.coco import COCO

from detect.eval import CocoEvaluator, evaluate_results
from detect.structures import Detections


def make_gt(annotations: list[dict]) -> COCO:
    coco = COCO()
    coco.dataset = {
        "images": [{"id": 1, "width": 100, "height": 100}, {"id": 2, "width": 100, "height": 100}],
        "annotations": annotations,
        "categories": [{"id": 3, "name": "cat"}, {"id": 7, "name": "dog"}],
    }
    coco.createIndex()
    return coco


GT = [
    {"id": 1, "image_id": 1, "category_id": 3, "bbox": [10, 10, 30, 40], "area": 1200, "iscrowd": 0},
    {"id": 2, "image_id": 1, "category_id": 7, "bbox": [50, 50, 40, 30], "area": 1200, "iscrowd": 0},
    {"id": 3, "image_id": 2, "category_id": 7, "bbox": [0, 0, 90, 90], "area": 8100, "iscrowd": 0},
]


def perfect(evaluator: CocoEvaluator) -> None:
    evaluator.update(
        [1, 2],
        [
            Detections(torch.tensor([[10.0, 10, 40, 50], [50, 50, 90, 80]]), torch.tensor([0.9, 0.8]), torch.tensor([0, 1])),
            Detections(torch.tensor([[0.0, 0, 90, 90]]), torch.tensor([0.7]), torch.tensor([1])),
        ],
    )


def test_perfect_predictions_score_one() -> None:
    evaluator = CocoEvaluator(make_gt(GT), (3, 7))
    perfect(evaluator)
    metrics = evaluator.compute()
    assert metrics["bbox/AP"] == pytest.approx(1.0) and metrics["bbox/AP50"] == pytest.approx(1.0)
    assert metrics["bbox/AP/cat"] == pytest.approx(1.0) and metrics["bbox/AP/dog"] == pytest.approx(1.0)
    assert {r["category_id"] for r in evaluator.results} == {3, 7}


def test_no_predictions_score_zero() -> None:
    evaluator = CocoEvaluator(make_gt(GT), (3, 7))
    evaluator.update([1, 2], [Detections(torch.zeros((0, 4)), torch.zeros(0), torch.zeros(0, dtype=torch.long))] * 2)
    metrics = evaluator.compute()
    assert metrics["bbox/AP"] == 0.0 and metrics["bbox/AP50"] == 0.0


def test_wrong_class_scores_zero_and_half_right_scores_between() -> None:
    evaluator = CocoEvaluator(make_gt(GT), (3, 7))
    evaluator.update([1], [Detections(torch.tensor([[10.0, 10, 40, 50]]), torch.tensor([0.9]), torch.tensor([1]))])
    assert evaluator.compute()["bbox/AP/cat"] == 0.0
    evaluator = CocoEvaluator(make_gt(GT), (3, 7))
    perfect(evaluator)
    evaluator.update([1], [Detections(torch.tensor([[0.0, 0, 5, 5]]), torch.tensor([0.99]), torch.tensor([0]))])
    assert evaluator.compute()["bbox/AP"] == pytest.approx(1.0), "repeated image ids must be ignored"


def test_empty_ground_truth_is_handled() -> None:
    metrics = evaluate_results(make_gt([]), [{"image_id": 1, "category_id": 3, "bbox": [0, 0, 5, 5], "score": 0.5}])
    # pycocotools' convention: -1 where there is nothing to score.
    assert metrics["bbox/AP"] == -1.0 and metrics["bbox/AP50"] == -1.0


def test_peer_fake_bbox_results_reproduced(shared_realdata: Path) -> None:
    """Pinned pycocotools demo numbers, through our structures: results -> Detections -> results -> COCOeval."""
    folder = shared_realdata / "peer_cocoapi_val2014_100"
    gt = COCO(str(folder / "instances_val2014_100.json"))
    results = json.loads((folder / "instances_val2014_fakebbox100_results.json").read_text())
    category_ids = tuple(sorted(gt.getCatIds()))
    index = {c: i for i, c in enumerate(category_ids)}
    evaluator = CocoEvaluator(gt, category_ids)
    by_image: dict[int, list[dict]] = {}
    for r in results:
        by_image.setdefault(r["image_id"], []).append(r)
    for image_id in gt.getImgIds():
        rows = by_image.get(image_id, [])
        boxes = torch.tensor([[x, y, x + w, y + h] for x, y, w, h in (r["bbox"] for r in rows)], dtype=torch.float64)
        evaluator.update(
            [image_id],
            [Detections(boxes.reshape(-1, 4), torch.tensor([r["score"] for r in rows], dtype=torch.float64),
                        torch.tensor([index[r["category_id"]] for r in rows], dtype=torch.long))],
        )
    metrics = evaluator.compute()
    assert metrics["bbox/AP"] == pytest.approx(0.5045806987249628, abs=1e-9)
    assert metrics["bbox/AP50"] == pytest.approx(0.6969727247299577, abs=1e-9)
