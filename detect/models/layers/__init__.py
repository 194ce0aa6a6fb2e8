"""Building blocks shared by backbones, necks and heads."""

from detect.models.layers.conv import conv_bn_act
from detect.models.layers.csp import C2f, CSPBottleneck, SPPF

__all__ = ["C2f", "CSPBottleneck", "SPPF", "conv_bn_act"]
