"""Tasks: the LightningModule and the train / evaluate / predict entry functions."""

from detect.tasks.callbacks import EMA
from detect.tasks.checkpoint import load_task
from detect.tasks.evaluate import evaluate
from detect.tasks.export import export
from detect.tasks.module import DetectionTask
from detect.tasks.predict import predict
from detect.tasks.train import train

__all__ = ["EMA", "DetectionTask", "evaluate", "export", "load_task", "predict", "train"]
