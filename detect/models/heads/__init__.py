"""Task heads, built from the neck's ``out_specs``."""

from detect.models.heads.assigner import TaskAlignedAssigner
from detect.models.heads.base import Head
from detect.models.heads.detection import DetectHead, DetectOutputs
from detect.models.heads.pose import PoseHead, PoseOutputs
from detect.models.heads.segmentation import SegmentHead, SegmentOutputs

__all__ = [
    "DetectHead",
    "DetectOutputs",
    "Head",
    "PoseHead",
    "PoseOutputs",
    "SegmentHead",
    "SegmentOutputs",
    "TaskAlignedAssigner",
]
