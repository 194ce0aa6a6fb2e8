"""Necks: refine backbone features; built from the backbone's ``out_specs``."""

from detect.models.necks.base import Neck
from detect.models.necks.bifpn import BiFPN
from detect.models.necks.fpn import FPN
from detect.models.necks.pan import PAN
from detect.models.necks.simple_pyramid import SimpleFeaturePyramid

__all__ = ["BiFPN", "FPN", "PAN", "Neck", "SimpleFeaturePyramid"]
