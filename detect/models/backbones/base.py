"""The backbone contract: an image batch in, a dict of feature maps out, their shapes declared up front."""

from __future__ import annotations

import logging

from torch import Tensor, nn
from torchvision.ops import FrozenBatchNorm2d

from detect.structures import FeatureSpec

__all__ = ["Backbone", "freeze_batchnorm"]

log = logging.getLogger(__name__)


class Backbone(nn.Module):
    """Base class for every backbone.

    Subclasses set ``out_specs`` in ``__init__`` (before any forward pass), keyed ``"p{k}"`` with
    ``stride == 2**k`` and ordered fine to coarse, and return exactly those keys from ``forward``.
    Those that can be fine-tuned stage by stage also implement :meth:`stage_prefixes`.

    Attributes:
        out_specs: channels and stride of each returned feature.
        size_divisibility: input height and width must be multiples of this.
    """

    out_specs: dict[str, FeatureSpec]
    size_divisibility: int = 32

    def forward(self, images: Tensor) -> dict[str, Tensor]:  # pragma: no cover - abstract
        """Compute features of ``(B, 3, H, W)`` normalised images."""
        raise NotImplementedError

    def stage_prefixes(self) -> list[list[str]]:
        """Parameter-name prefixes of the stem, then of each stage, input to output.

        Index 0 is the stem; index ``k`` the ``k``-th stage (a ViT's ``k``-th block). Freezing
        (``freeze_at``) and layer-wise learning-rate decay both read this. Parameters of the
        backbone under none of these prefixes (adapters such as a simple pyramid) are new layers.
        """
        raise NotImplementedError(f"{type(self).__name__} does not define its stages")

    def stage_of(self) -> dict[str, int]:
        """Parameter name -> stage index (see :meth:`stage_prefixes`), for the parameters in a stage."""
        stages = self.stage_prefixes()
        index = {}
        for name, _ in self.named_parameters():
            for stage, prefixes in enumerate(stages):
                if any(name == prefix or name.startswith(prefix + ".") for prefix in prefixes):
                    index[name] = stage
                    break
        return index

    def freeze(self, at: int | None) -> None:
        """Freeze the stem and the first ``at`` stages (0: the stem only; None: nothing).

        Frozen parameters stop requiring gradients and the BatchNorm layers inside them become
        :class:`~torchvision.ops.FrozenBatchNorm2d`, so their statistics stop moving too.
        """
        if at is None:
            return
        stages = self.stage_prefixes()
        if not 0 <= at < len(stages):
            raise ValueError(
                f"freeze_at={at} is out of range for {type(self).__name__}: 0 (stem) to {len(stages) - 1}"
            )
        frozen = [prefix for prefixes in stages[: at + 1] for prefix in prefixes]
        count = 0
        for name, param in self.named_parameters():
            if any(name == prefix or name.startswith(prefix + ".") for prefix in frozen):
                param.requires_grad_(False)
                count += param.numel()
        for prefix in frozen:
            try:
                module = self.get_submodule(prefix)
            except AttributeError:  # a bare parameter such as a ViT's pos_embed
                continue
            if isinstance(module, nn.BatchNorm2d):
                parent, _, name = prefix.rpartition(".")
                setattr(self.get_submodule(parent) if parent else self, name, _frozen_copy(module))
            else:
                freeze_batchnorm(module)
        log.info("froze the stem and %d stage(s) of %s: %d parameters", at, type(self).__name__, count)

    def _set_out_specs(self, specs: dict[str, FeatureSpec]) -> None:
        for key, spec in specs.items():
            if key != f"p{spec.stride.bit_length() - 1}" or spec.stride & (spec.stride - 1):
                raise ValueError(
                    f"feature key {key!r} does not match its stride {spec.stride} (want p{{log2(stride)}})"
                )
        self.out_specs = dict(sorted(specs.items(), key=lambda item: item[1].stride))
        self.size_divisibility = max(spec.stride for spec in specs.values())


def freeze_batchnorm(module: nn.Module) -> nn.Module:
    """Replace every ``BatchNorm2d`` under ``module`` (in place) by a FrozenBatchNorm2d with its statistics."""
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d):
            setattr(module, name, _frozen_copy(child))
        else:
            freeze_batchnorm(child)
    return module


def _frozen_copy(norm: nn.BatchNorm2d) -> FrozenBatchNorm2d:
    frozen = FrozenBatchNorm2d(norm.num_features, eps=norm.eps)
    if norm.affine:
        frozen.weight.copy_(norm.weight.detach())
        frozen.bias.copy_(norm.bias.detach())
    if norm.track_running_stats:
        frozen.running_mean.copy_(norm.running_mean)
        frozen.running_var.copy_(norm.running_var)
    return frozen
