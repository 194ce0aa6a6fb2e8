"""Task heads, built from the neck's ``out_specs``."""

from detect.models.heads.assigner import TaskAlignedAssigner
from detect.models.heads.base import Head
from detect.models.heads.detection import DetectHead, DetectOutputs

__all__ = ["DetectHead", "DetectOutputs", "Head", "TaskAlignedAssigner"]
