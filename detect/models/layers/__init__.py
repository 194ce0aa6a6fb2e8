"""Building blocks shared by backbones, necks and heads."""

from detect.models.layers.conv import conv_bn_act, separable_pair
from detect.models.layers.csp import SPPF, C2f, CSPBottleneck
from detect.models.layers.grad import scale_grad

__all__ = ["C2f", "CSPBottleneck", "SPPF", "conv_bn_act", "scale_grad", "separable_pair"]
