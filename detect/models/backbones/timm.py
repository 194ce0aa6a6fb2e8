"""Adapter over any timm model that supports ``features_only``."""

from __future__ import annotations

import logging

import timm
import torch
from torch import Tensor

from detect.models.backbones._weights import (
    load_matching,
    read_state_dict,
    resample_pos_embed,
    strip_prefixes,
)
from detect.models.backbones.base import Backbone
from detect.models.backbones.hub import timm_pretrained
from detect.models.necks.simple_pyramid import SimpleFeaturePyramid
from detect.structures import FeatureSpec

__all__ = ["TimmBackbone"]

log = logging.getLogger(__name__)


def _create(name: str, pretrained: bool, model_kwargs: dict) -> torch.nn.Module:
    # Transformers take any input size only when asked (dynamic_img_size); models that do not know the
    # argument refuse it with a TypeError and are built without it.
    for extra in ({"dynamic_img_size": True}, {}):
        try:
            with timm_pretrained(name, pretrained):
                return timm.create_model(
                    name, pretrained=pretrained, features_only=True, **extra, **model_kwargs
                )
        except TypeError:
            if not extra:
                raise
    raise AssertionError("unreachable")


class TimmBackbone(Backbone):
    """Any timm model as a ``p3``/``p4``/``p5`` backbone.

    Multi-scale models return the feature levels whose reduction is 8, 16 and 32, read from timm's
    ``feature_info``. Flat models (every level at one reduction, as in ViT/DeiT at 16 or a
    ResNet-ViT hybrid at 32) get a simple feature pyramid on their last level. Channels-last
    (NHWC) outputs, as Swin's, are turned to NCHW.

    Args:
        name: any timm model name, e.g. ``convnext_atto`` or ``resnet18d``.
        pretrained: load timm's hub weights (needs the network or a filled cache).
        weights: local file to load instead.
        pyramid_channels: output channels of the simple pyramid, for flat models only.
        freeze_at: freeze the stem and this many stages (0: stem only; null: train everything).
        model_kwargs: extra arguments for ``timm.create_model``.
    """

    def __init__(
        self,
        name: str,
        pretrained: bool = False,
        weights: str | None = None,
        pyramid_channels: int = 128,
        freeze_at: int | None = None,
        model_kwargs: dict | None = None,
    ) -> None:
        super().__init__()
        if not timm.is_model(name) and not timm.list_models(name):
            raise ValueError(f"unknown timm model {name!r}; see timm.list_models('*pattern*')")
        self.name = name
        self.body = _create(name, pretrained, dict(model_kwargs or {}))
        self.load_report = None
        if weights:
            # Wrapped models (ViT-like) hold the original model, whose names a timm file uses.
            target = getattr(self.body, "model", self.body)
            state_dict = strip_prefixes(read_state_dict(weights), set(target.state_dict()))
            self.load_report = load_matching(target, resample_pos_embed(state_dict, target), name=weights)
        reductions = self.body.feature_info.reduction()
        channels = self.body.feature_info.channels()
        self.nhwc = self._emits_nhwc(channels)
        self.pyramid = None
        if len(set(reductions)) == 1:
            stride = reductions[0]
            if stride not in (8, 16, 32):
                raise ValueError(f"{name} is a flat model at stride {stride}; the pyramid needs 8, 16 or 32")
            self.indices = [len(reductions) - 1]
            self.pyramid = SimpleFeaturePyramid(channels[-1], pyramid_channels, in_stride=stride)
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
        self.freeze(freeze_at)

    @torch.no_grad()
    def _emits_nhwc(self, channels: list[int]) -> bool:
        fmt = str(getattr(self.body, "output_fmt", None))
        if "NHWC" in fmt:
            return True
        if "NCHW" in fmt:
            return False
        # Wrappers that do not say: look at one small forward pass.
        training = self.body.training
        features = self.body.eval()(torch.zeros(1, 3, 64, 64))
        self.body.train(training)
        return features[-1].shape[1] != channels[-1] and features[-1].shape[-1] == channels[-1]

    def stage_prefixes(self) -> list[list[str]]:
        if hasattr(self.body, "model") and hasattr(self.body.model, "group_matcher"):
            return self._grouped_stages()
        return self._feature_info_stages()

    def _grouped_stages(self) -> list[list[str]]:
        # Wrapped models (ViT-like): timm's own grouping, one group per block, the stem first.
        from timm.models import group_parameters

        model = self.body.model
        groups = group_parameters(model, model.group_matcher(coarse=False))
        ordered = [names for _, names in sorted(groups.items()) if names]
        return [[f"body.model.{name}" for name in names] for names in ordered]

    def _feature_info_stages(self) -> list[list[str]]:
        # Every parameter up to and including a feature level's module belongs to that level's
        # stage; levels finer than stride 4 (and what precedes them) make the stem.
        infos = self.body.feature_info.info
        prefixes = [(info["module"], info["module"].replace(".", "_", 1)) for info in infos]
        groups: list[list[str]] = [[] for _ in infos]
        pending: list[str] = []
        leading: list[str] | None = None
        for name, _ in self.body.named_parameters():
            match = next(
                (i for i, options in enumerate(prefixes) if any(_under(name, p) for p in options)), None
            )
            if match is None:
                pending.append(f"body.{name}")
                continue
            if leading is None:
                leading, pending = pending, []
            groups[match] += pending + [f"body.{name}"]
            pending = []
        if groups:
            groups[-1] += pending
        stem = list(leading or [])
        stages = []
        for info, group in zip(infos, groups):
            if info["reduction"] < 4:
                stem += group
            elif group:
                stages.append(group)
        return [stem, *stages]

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        features = self.body(images)
        if self.nhwc:
            features = [feature.permute(0, 3, 1, 2) for feature in features]
        if self.pyramid is not None:
            return self.pyramid(features[self.indices[0]])
        return {key: features[index] for key, index in zip(self.out_specs, self.indices)}


def _under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")
