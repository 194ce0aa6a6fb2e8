"""detect: object detection with swappable backbones."""

from detect.structures import Batch, Detections, FeatureSpec, Targets

__version__ = "0.1.0"

__all__ = ["Batch", "Detections", "FeatureSpec", "Targets", "__version__"]
