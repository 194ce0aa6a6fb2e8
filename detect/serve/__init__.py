"""Serving: the prediction server (and, later, the web app). Users of :mod:`detect.inference`."""

from detect.serve.batcher import Batcher, Busy
from detect.serve.server import Limits, create_app

__all__ = ["Batcher", "Busy", "Limits", "create_app"]
