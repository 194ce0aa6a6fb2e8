"""Everything a deployed model needs: loading, runtimes, sources, results and drawing.

Imports models, data and structures, never Lightning or Hydra.
"""

from detect.inference.checkpoint import CheckpointError, TrainedModel, load_checkpoint
from detect.inference.deploy import DeployModel, describe
from detect.inference.metadata import ModelInfo
from detect.inference.predictor import Predictor, load
from detect.inference.results import Results
from detect.inference.runtimes import ModelFileError, open_runtime
from detect.inference.sources import Frame, SourceError, iter_frames
from detect.inference.video import VideoWriter
from detect.inference.visualize import draw_detections

__all__ = [
    "CheckpointError",
    "DeployModel",
    "Frame",
    "ModelFileError",
    "ModelInfo",
    "Predictor",
    "Results",
    "SourceError",
    "TrainedModel",
    "VideoWriter",
    "describe",
    "draw_detections",
    "iter_frames",
    "load",
    "load_checkpoint",
    "open_runtime",
]
