"""Backbones: images in, ``p{k}`` feature maps out, shapes declared in ``out_specs``."""

from detect.models.backbones.base import Backbone
from detect.models.backbones.cspdarknet import CSPDarknet
from detect.models.backbones.timm import TimmBackbone
from detect.models.backbones.torchvision import TorchvisionBackbone
from detect.models.backbones.vit import ViT

__all__ = ["Backbone", "CSPDarknet", "TimmBackbone", "TorchvisionBackbone", "ViT"]
