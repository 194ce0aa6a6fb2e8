"""Evaluation: pycocotools metrics and result tables."""

from detect.eval.coco import CocoEvaluator, detections_to_coco, evaluate_results
from detect.eval.tables import collect_sweep, format_metrics, format_sweep

__all__ = [
    "CocoEvaluator",
    "collect_sweep",
    "detections_to_coco",
    "evaluate_results",
    "format_metrics",
    "format_sweep",
]
