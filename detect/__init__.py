"""detect: object detection with swappable backbones.

``detect.load(path)`` gives a :class:`~detect.inference.Predictor` for a checkpoint or an exported
model; it is imported on first use so that ``import detect`` stays light.
"""

from typing import Any

from detect.structures import Batch, Detections, FeatureSpec, Targets

__version__ = "0.1.0"

__all__ = ["Batch", "Detections", "FeatureSpec", "Predictor", "Results", "Targets", "__version__", "load"]


def __getattr__(name: str) -> Any:
    if name in ("load", "Predictor", "Results"):
        import detect.inference

        return getattr(detect.inference, name)
    raise AttributeError(f"module 'detect' has no attribute {name!r}")
