"""Adapter over any timm model that supports ``features_only``."""

from __future__ import annotations

import logging

import timm
from torch import Tensor

from detect.models.backbones._weights import WeightsUnavailableError, load_matching, read_state_dict
from detect.models.backbones.base import Backbone
from detect.models.necks.simple_pyramid import SimpleFeaturePyramid
from detect.structures import FeatureSpec

__all__ = ["TimmBackbone"]

log = logging.getLogger(__name__)


class TimmBackbone(Backbone):
    """Any timm model as a ``p3``/``p4``/``p5`` backbone.

    Multi-scale models return the feature levels whose reduction is 8, 16 and 32, read from timm's
    ``feature_info``. Flat models (every level at one reduction, as in ViT/DeiT) get a simple
    feature pyramid on their last level.

    Args:
        name: any timm model name, e.g. ``convnext_atto`` or ``resnet18d``.
        pretrained: load timm's hub weights (needs the network or a filled cache).
        weights: local file to load instead.
        pyramid_channels: output channels of the simple pyramid, for flat models only.
        model_kwargs: extra arguments for ``timm.create_model``.
    """

    def __init__(
        self,
        name: str,
        pretrained: bool = False,
        weights: str | None = None,
        pyramid_channels: int = 128,
        model_kwargs: dict | None = None,
    ) -> None:
        super().__init__()
        if not timm.list_models(name) and not timm.is_model(name):
            raise ValueError(f"unknown timm model {name!r}; see timm.list_models('*pattern*')")
        try:
            self.body = timm.create_model(
                name, pretrained=pretrained, features_only=True, **(model_kwargs or {})
            )
        except RuntimeError as error:
            if pretrained:
                raise WeightsUnavailableError(
                    f"could not load timm's pretrained weights for {name} ({error}); with no network, pass "
                    "backbone.weights=/path/to/file.safetensors"
                ) from error
            raise
        if weights:
            load_matching(self.body, read_state_dict(weights), name=weights)
        reductions = self.body.feature_info.reduction()
        channels = self.body.feature_info.channels()
        self.pyramid = None
        if len(set(reductions)) == 1:
            if reductions[0] != 16:
                raise ValueError(
                    f"{name} is a flat model at stride {reductions[0]}; only stride 16 is supported"
                )
            self.indices = [len(reductions) - 1]
            self.pyramid = SimpleFeaturePyramid(channels[-1], pyramid_channels)
            specs = {f"p{level}": FeatureSpec(pyramid_channels, 2**level) for level in (3, 4, 5)}
        else:
            specs = {}
            self.indices = []
            for level in (3, 4, 5):
                matches = [i for i, reduction in enumerate(reductions) if reduction == 2**level]
                if not matches:
                    raise ValueError(f"{name} has no stride-{2**level} feature (reductions: {reductions})")
                self.indices.append(matches[-1])
                specs[f"p{level}"] = FeatureSpec(channels[matches[-1]], 2**level)
        self._set_out_specs(specs)

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        features = self.body(images)
        if self.pyramid is not None:
            return self.pyramid(features[self.indices[0]])
        return {key: features[index] for key, index in zip(self.out_specs, self.indices)}
