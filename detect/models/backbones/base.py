"""The backbone contract: an image batch in, a dict of feature maps out, their shapes declared up front."""

from __future__ import annotations

import logging

from timm.layers import freeze_batch_norm_2d
from torch import Tensor, nn

from detect.structures import FeatureSpec

__all__ = ["Backbone"]

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
        frozen ones (``timm.layers.freeze_batch_norm_2d``), so their statistics stop moving too.
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
            # timm's converter also keeps the activation of its fused BatchNormAct2d layers.
            frozen_module = freeze_batch_norm_2d(module)
            if frozen_module is not module:  # the prefix named a norm layer itself
                parent, _, name = prefix.rpartition(".")
                setattr(self.get_submodule(parent) if parent else self, name, frozen_module)
        log.info("froze the stem and %d stage(s) of %s: %d parameters", at, type(self).__name__, count)

    def _set_out_specs(self, specs: dict[str, FeatureSpec]) -> None:
        for key, spec in specs.items():
            if key != f"p{spec.stride.bit_length() - 1}" or spec.stride & (spec.stride - 1):
                raise ValueError(
                    f"feature key {key!r} does not match its stride {spec.stride} (want p{{log2(stride)}})"
                )
        self.out_specs = dict(sorted(specs.items(), key=lambda item: item[1].stride))
        self.size_divisibility = max(spec.stride for spec in specs.values())
