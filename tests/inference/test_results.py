"""predictions.json records: one per image, also for images where nothing was found."""

import numpy as np
import torch

from detect.data.coco import CategoryMap
from detect.inference import Results
from detect.structures import Detections

CATEGORIES = CategoryMap.from_coco(
    [
        {"id": 1, "name": "person", "keypoints": ["head", "hand"], "skeleton": [[1, 2]]},
        {"id": 5, "name": "ball"},
    ]
)


def pose_detections(count: int) -> Detections:
    return Detections(
        torch.tensor([[1.0, 2.0, 30.0, 40.0]]).repeat(count, 1),
        torch.full((count,), 0.9),
        torch.tensor([0, 1] * count)[:count],
        keypoints=torch.arange(count * 6, dtype=torch.float32).reshape(count, 2, 3),
    )


def prediction_entry(
    path: str, width: int, height: int, detections: Detections, categories: CategoryMap
) -> dict:
    return Results(detections, categories, np.zeros((height, width, 3), np.uint8), path).to_dict()


def test_pose_entry_flattens_keypoints_per_detection() -> None:
    entry = prediction_entry("a.jpg", 64, 48, pose_detections(2), CATEGORIES)
    assert entry["category_ids"] == [1, 5] and entry["category_names"] == ["person", "ball"]
    assert entry["keypoints"] == [[0.0, 1.0, 2.0, 3.0, 4.0, 5.0], [6.0, 7.0, 8.0, 9.0, 10.0, 11.0]]


def test_pose_entry_without_detections() -> None:
    # An image where nothing passes score_thresh: an empty record, not a crash.
    entry = prediction_entry("b.jpg", 64, 48, pose_detections(0), CATEGORIES)
    assert entry["boxes"] == [] and entry["keypoints"] == [] and entry["width"] == 64


def test_segment_entry_encodes_masks() -> None:
    masks = torch.zeros(1, 48, 64, dtype=torch.bool)
    masks[0, 10:20, 5:15] = True
    detections = Detections(
        torch.tensor([[5.0, 10.0, 15.0, 20.0]]), torch.tensor([0.5]), torch.tensor([1]), masks=masks
    )
    entry = prediction_entry("c.jpg", 64, 48, detections, CATEGORIES)
    assert len(entry["masks"]) == 1 and entry["masks"][0]["size"] == [48, 64]
