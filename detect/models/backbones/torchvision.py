"""Adapter over torchvision classification models: their stages become ``p{k}`` features."""

from __future__ import annotations

import logging

import torchvision
from torch import Tensor, nn
from torchvision.models._utils import IntermediateLayerGetter
from torchvision.ops import FrozenBatchNorm2d

from detect.models.backbones._weights import WeightsUnavailableError, load_matching, read_state_dict
from detect.models.backbones.base import Backbone
from detect.structures import FeatureSpec

__all__ = ["TorchvisionBackbone"]

log = logging.getLogger(__name__)

# Which module of each family ends the stride-4/8/16/32 stages.
_STAGE_MODULES = {
    "resnet": {"layer1": 2, "layer2": 3, "layer3": 4, "layer4": 5},
}


def _family(name: str) -> str:
    for family in _STAGE_MODULES:
        if name.startswith(family):
            return family
    raise ValueError(f"no torchvision family for {name!r}; supported: {sorted(_STAGE_MODULES)}")


def _out_channels(module: nn.Module) -> int:
    channels = [m.num_features for m in module.modules() if isinstance(m, nn.BatchNorm2d | FrozenBatchNorm2d)]
    if not channels:
        raise ValueError(f"cannot tell the output channels of {type(module).__name__}")
    return channels[-1]


class TorchvisionBackbone(Backbone):
    """A torchvision model cut at its stage boundaries.

    Args:
        name: a torchvision model name such as ``resnet18`` or ``resnet50``.
        out_features: levels to return (``p2``..``p5``).
        pretrained: load torchvision's default ImageNet weights (needs the network or a filled cache).
        weights: path of a local ``.pth``/``.safetensors`` file to load instead.
        frozen_bn: replace BatchNorm by FrozenBatchNorm2d (for fine-tuning with small batches).
    """

    def __init__(
        self,
        name: str = "resnet18",
        out_features: tuple[str, ...] = ("p3", "p4", "p5"),
        pretrained: bool = False,
        weights: str | None = None,
        frozen_bn: bool = False,
    ) -> None:
        super().__init__()
        family = _family(name)
        model = torchvision.models.get_model(
            name,
            weights=_default_weights(name) if pretrained else None,
            norm_layer=FrozenBatchNorm2d if frozen_bn else None,
        )
        if weights:
            load_matching(model, read_state_dict(weights), name=weights)
        level_of = _STAGE_MODULES[family]
        wanted = {module: f"p{level}" for module, level in level_of.items() if f"p{level}" in out_features}
        missing = set(out_features) - set(wanted.values())
        if missing:
            raise ValueError(
                f"{name} offers {sorted(f'p{v}' for v in level_of.values())}, not {sorted(missing)}"
            )
        self.body = IntermediateLayerGetter(model, return_layers=wanted)
        self._set_out_specs(
            {
                key: FeatureSpec(_out_channels(getattr(model, module)), 2 ** level_of[module])
                for module, key in wanted.items()
            }
        )

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        return dict(self.body(images))


def _default_weights(name: str) -> torchvision.models.WeightsEnum:
    weights = torchvision.models.get_model_weights(name).DEFAULT
    try:
        weights.get_state_dict(progress=False, check_hash=True)
    except Exception as error:  # urllib raises several unrelated types when offline
        raise WeightsUnavailableError(
            f"could not fetch torchvision weights {weights} ({error}); with no network, download "
            f"{weights.url} elsewhere and pass backbone.weights=/path/to/file.pth"
        ) from error
    return weights
