"""The pycocotools evaluator on tiny inline data, and a peer's pinned numbers."""

import contextlib
import io
import json
from pathlib import Path

import numpy as np
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
            Detections(
                torch.tensor([[10.0, 10, 40, 50], [50, 50, 90, 80]]),
                torch.tensor([0.9, 0.8]),
                torch.tensor([0, 1]),
            ),
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
    evaluator.update(
        [1, 2], [Detections(torch.zeros((0, 4)), torch.zeros(0), torch.zeros(0, dtype=torch.long))] * 2
    )
    metrics = evaluator.compute()
    assert metrics["bbox/AP"] == 0.0 and metrics["bbox/AP50"] == 0.0


def test_wrong_class_scores_zero_and_half_right_scores_between() -> None:
    evaluator = CocoEvaluator(make_gt(GT), (3, 7))
    evaluator.update(
        [1], [Detections(torch.tensor([[10.0, 10, 40, 50]]), torch.tensor([0.9]), torch.tensor([1]))]
    )
    assert evaluator.compute()["bbox/AP/cat"] == 0.0
    evaluator = CocoEvaluator(make_gt(GT), (3, 7))
    perfect(evaluator)
    evaluator.update(
        [1], [Detections(torch.tensor([[0.0, 0, 5, 5]]), torch.tensor([0.99]), torch.tensor([0]))]
    )
    assert evaluator.compute()["bbox/AP"] == pytest.approx(1.0), "repeated image ids must be ignored"


def test_empty_ground_truth_is_handled() -> None:
    metrics = evaluate_results(
        make_gt([]), [{"image_id": 1, "category_id": 3, "bbox": [0, 0, 5, 5], "score": 0.5}]
    )
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
        boxes = torch.tensor(
            [[x, y, x + w, y + h] for x, y, w, h in (r["bbox"] for r in rows)], dtype=torch.float64
        )
        evaluator.update(
            [image_id],
            [
                Detections(
                    boxes.reshape(-1, 4),
                    torch.tensor([r["score"] for r in rows], dtype=torch.float64),
                    torch.tensor([index[r["category_id"]] for r in rows], dtype=torch.long),
                )
            ],
        )
    metrics = evaluator.compute()
    assert metrics["bbox/AP"] == pytest.approx(0.5045806987249628, abs=1e-9)
    assert metrics["bbox/AP50"] == pytest.approx(0.6969727247299577, abs=1e-9)


def _gt_as_detections(gt: COCO, image_id: int, category_ids: tuple[int, ...]) -> Detections:
    """Ground truth of one image through the framework's structures, as perfect predictions."""
    from detect.data.coco import segmentation_to_mask

    info = gt.imgs[image_id]
    anns = [a for a in gt.imgToAnns[image_id] if not a.get("iscrowd", 0)]
    index = {c: i for i, c in enumerate(category_ids)}
    boxes = torch.tensor(
        [[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in anns)], dtype=torch.float64
    )
    detections = Detections(
        boxes.reshape(-1, 4),
        torch.ones(len(anns), dtype=torch.float64),
        torch.tensor([index[a["category_id"]] for a in anns], dtype=torch.long),
    )
    if anns and all(a.get("segmentation") for a in anns):
        detections.masks = torch.from_numpy(
            np.stack([segmentation_to_mask(a["segmentation"], info["height"], info["width"]) for a in anns])
        ).bool()
    if anns and all("keypoints" in a for a in anns):
        keypoints = torch.tensor([a["keypoints"] for a in anns], dtype=torch.float64).reshape(
            len(anns), -1, 3
        )
        # A person with no labelled keypoint is scored by pycocotools on whether the predicted
        # keypoints fall near its box; a real model puts them on the person, so do the same here.
        unlabelled = keypoints[..., 2].eq(0).all(dim=1)
        centres = (boxes[:, :2] + boxes[:, 2:]) / 2
        keypoints[unlabelled, :, :2] = centres[unlabelled, None]
        detections.keypoints = keypoints
    return detections


@pytest.mark.parametrize(
    ("folder", "ann", "iou_types"),
    [
        ("coco_val2017_kpts4", "annotations/test_coco.json", ("bbox", "keypoints")),
        ("coco8-seg", "annotations/instances_val.json", ("bbox", "segm")),
        ("coco8-seg", "annotations/instances_train.json", ("bbox", "segm")),
        ("coco8-pose", "annotations/person_keypoints_val.json", ("bbox", "keypoints")),
    ],
)
def test_exporters_are_exact(
    shared_realdata: Path, folder: str, ann: str, iou_types: tuple[str, ...]
) -> None:
    """Ground truth written as predictions by the framework scores exactly 1.0."""
    from detect.structures import KeypointInfo

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(shared_realdata / folder / ann))
    category_ids = tuple(sorted(gt.getCatIds()))
    evaluator = CocoEvaluator(
        gt, category_ids, iou_types, KeypointInfo.from_categories(gt.dataset["categories"])
    )
    for image_id in gt.getImgIds():
        evaluator.update([image_id], [_gt_as_detections(gt, image_id, category_ids)])
    metrics = evaluator.compute()
    for iou_type in iou_types:
        assert metrics[f"{iou_type}/AP"] == pytest.approx(1.0, abs=1e-12), (iou_type, metrics)


def test_peer_fake_segm_results_reproduced(shared_realdata: Path) -> None:
    """load results -> internal Detections (decoded masks) -> write results -> COCOeval."""
    from detect.eval.coco import results_to_detections

    folder = shared_realdata / "peer_cocoapi_val2014_100"
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(folder / "instances_val2014_100.json"))
    results = json.loads((folder / "instances_val2014_fakesegm100_results.json").read_text())
    category_ids = tuple(sorted(gt.getCatIds()))
    evaluator = CocoEvaluator(gt, category_ids, ("segm",))
    by_image: dict[int, list[dict]] = {}
    for r in results:
        by_image.setdefault(r["image_id"], []).append(r)
    for image_id in gt.getImgIds():
        info = gt.imgs[image_id]
        detections = results_to_detections(
            by_image.get(image_id, []), category_ids, (info["height"], info["width"])
        )
        if detections.masks is None:
            detections.masks = torch.zeros((0, info["height"], info["width"]), dtype=torch.bool)
        evaluator.update([image_id], [detections])
    metrics = evaluator.compute()
    assert metrics["segm/AP"] == pytest.approx(0.3195452758576433, abs=1e-9)
    assert metrics["segm/AP50"] == pytest.approx(0.5622883972521636, abs=1e-9)
