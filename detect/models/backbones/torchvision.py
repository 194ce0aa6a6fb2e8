"""Adapter over torchvision classification models: their trunk, cut where the stride reaches 8, 16, 32."""

from __future__ import annotations

import logging

import torch
import torchvision
from timm.layers import freeze_batch_norm_2d
from torch import Tensor, nn

from detect.models.backbones._weights import load_matching, read_state_dict
from detect.models.backbones.base import Backbone
from detect.models.backbones.hub import torchvision_weights
from detect.structures import FeatureSpec

__all__ = ["TorchvisionBackbone", "TORCHVISION_FAMILIES"]

log = logging.getLogger(__name__)

# Per family: the modules that make the trunk, in order ("x.*" stands for the children of x), how
# many of them form the stem, and whether they emit channels-last (NHWC) tensors.
TORCHVISION_FAMILIES: dict[str, tuple[tuple[str, ...], int, bool]] = {
    "resnet": (("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"), 4, False),
    "resnext": (("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"), 4, False),
    "wide_resnet": (("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"), 4, False),
    "regnet": (("stem", "trunk_output.*"), 1, False),
    "vgg": (("features.*",), 0, False),
    "mobilenet": (("features.*",), 1, False),
    "efficientnet": (("features.*",), 1, False),
    "convnext": (("features.*",), 1, False),
    "swin": (("features.*",), 1, True),
}


def _family(name: str) -> str:
    for family in sorted(TORCHVISION_FAMILIES, key=len, reverse=True):
        if name.startswith(family):
            return family
    raise ValueError(f"no torchvision family for {name!r}; supported: {sorted(TORCHVISION_FAMILIES)}")


def _trunk_names(model: nn.Module, patterns: tuple[str, ...]) -> list[str]:
    names = []
    for pattern in patterns:
        if pattern.endswith(".*"):
            parent = pattern[:-2]
            names += [f"{parent}.{child}" for child, _ in model.get_submodule(parent).named_children()]
        else:
            names.append(pattern)
    return names


class TorchvisionBackbone(Backbone):
    """A torchvision classification model whose trunk returns the last map at each of strides 8/16/32.

    The trunk is run module by module; a dry run at build time measures each module's stride and
    channels, so no family needs a hand-written channel table. Parameter names stay torchvision's
    (under ``body.``), so torchvision checkpoints load as they are.

    Args:
        name: a torchvision model name: ``resnet18/34/50/101``, ``vgg16_bn``, ``mobilenet_v3_small``,
            ``efficientnet_b0``, ``convnext_tiny``, ``swin_t``, ``regnet_y_800mf`` ...
        out_features: levels to return (``p2``..``p5``).
        pretrained: load torchvision's default ImageNet weights (needs the network or a filled cache).
        weights: path of a local ``.pth``/``.pt``/``.safetensors`` file to load instead.
        frozen_bn: turn every BatchNorm into FrozenBatchNorm2d (fine-tuning with small batches).
        freeze_at: freeze the stem and this many stages (0: stem only; null: train everything).
    """

    def __init__(
        self,
        name: str = "resnet18",
        out_features: tuple[str, ...] = ("p3", "p4", "p5"),
        pretrained: bool = False,
        weights: str | None = None,
        frozen_bn: bool = False,
        freeze_at: int | None = None,
    ) -> None:
        super().__init__()
        family = _family(name)
        patterns, stem_size, self.nhwc = TORCHVISION_FAMILIES[family]
        model = torchvision.models.get_model(name, weights=torchvision_weights(name) if pretrained else None)
        self.load_report = None
        if weights:
            self.load_report = load_matching(model, read_state_dict(weights), name=weights)
        names = _trunk_names(model, patterns)
        strides, channels = self._measure(model, names)
        wanted: dict[str, int] = {}
        for key in out_features:
            matches = [i for i, stride in enumerate(strides) if stride == 2 ** int(key[1:])]
            if not matches:
                raise ValueError(f"{name} offers strides {sorted(set(strides))}, no level {key!r}")
            wanted[key] = matches[-1]
        last = max(wanted.values())
        self.names = names[: last + 1]
        self.outputs = {index: key for key, index in wanted.items()}
        self._stages = self._group_stages(strides[: last + 1], stem_size)
        self.body = _prune(model, self.names)
        if frozen_bn:
            freeze_batch_norm_2d(self.body)
        self._set_out_specs(
            {key: FeatureSpec(channels[index], strides[index]) for key, index in wanted.items()}
        )
        self.freeze(freeze_at)

    @torch.no_grad()
    def _measure(self, model: nn.Module, names: list[str]) -> tuple[list[int], list[int]]:
        size = 128
        x = torch.zeros(1, 3, size, size)
        training = model.training
        model.eval()
        strides, channels = [], []
        for name in names:
            x = model.get_submodule(name)(x)
            height, depth = (x.shape[1], x.shape[3]) if self.nhwc else (x.shape[2], x.shape[1])
            strides.append(size // height)
            channels.append(int(depth))
        model.train(training)
        return strides, channels

    def _group_stages(self, strides: list[int], stem_size: int) -> list[list[str]]:
        # A module that lowers the resolution opens a new stage; the stem is the first stem_size
        # modules, or the first such group when the family has no separate stem.
        groups: list[list[str]] = []
        previous = 1
        for index, (name, stride) in enumerate(zip(self.names, strides)):
            if not groups or index == stem_size or (index > stem_size and stride > previous):
                groups.append([])
            groups[-1].append(f"body.{name}")
            previous = stride
        return groups

    def stage_prefixes(self) -> list[list[str]]:
        return self._stages

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        features = {}
        x = images
        for index, name in enumerate(self.names):
            x = self.body.get_submodule(name)(x)
            if index in self.outputs:
                features[self.outputs[index]] = x.permute(0, 3, 1, 2) if self.nhwc else x
        return features


def _prune(model: nn.Module, keep: list[str]) -> nn.Module:
    """Drop the classifier and every trunk module after the last one used."""
    wanted = set(keep)
    roots = {name.split(".")[0] for name in keep}
    for child, _ in list(model.named_children()):
        if child not in roots:
            delattr(model, child)
    for root in roots:
        module = model.get_submodule(root)
        if isinstance(module, nn.Sequential) and root not in wanted:
            for child in [name for name, _ in module.named_children()][::-1]:
                if f"{root}.{child}" not in wanted:
                    delattr(module, child)
    return model
