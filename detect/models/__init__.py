"""Models: backbones, necks, heads and the Detector that composes them."""

from detect.models.backbones import Backbone, CSPDarknet, TimmBackbone, TorchvisionBackbone, ViT
from detect.models.detector import Detector
from detect.models.heads import DetectHead, Head
from detect.models.necks import FPN, PAN, Neck, SimpleFeaturePyramid

__all__ = [
    "FPN",
    "PAN",
    "Backbone",
    "CSPDarknet",
    "DetectHead",
    "Detector",
    "Head",
    "Neck",
    "SimpleFeaturePyramid",
    "TimmBackbone",
    "TorchvisionBackbone",
    "ViT",
]
