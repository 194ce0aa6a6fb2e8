"""The backbone contract: an image batch in, a dict of feature maps out, their shapes declared up front."""

from torch import Tensor, nn

from detect.structures import FeatureSpec

__all__ = ["Backbone"]


class Backbone(nn.Module):
    """Base class for every backbone.

    Subclasses set ``out_specs`` in ``__init__`` (before any forward pass), keyed ``"p{k}"`` with
    ``stride == 2**k`` and ordered fine to coarse, and return exactly those keys from ``forward``.

    Attributes:
        out_specs: channels and stride of each returned feature.
        size_divisibility: input height and width must be multiples of this.
    """

    out_specs: dict[str, FeatureSpec]
    size_divisibility: int = 32

    def forward(self, images: Tensor) -> dict[str, Tensor]:  # pragma: no cover - abstract
        """Compute features of ``(B, 3, H, W)`` normalised images."""
        raise NotImplementedError

    def _set_out_specs(self, specs: dict[str, FeatureSpec]) -> None:
        for key, spec in specs.items():
            if key != f"p{spec.stride.bit_length() - 1}" or spec.stride & (spec.stride - 1):
                raise ValueError(
                    f"feature key {key!r} does not match its stride {spec.stride} (want p{{log2(stride)}})"
                )
        self.out_specs = dict(sorted(specs.items(), key=lambda item: item[1].stride))
        self.size_divisibility = max(spec.stride for spec in specs.values())
