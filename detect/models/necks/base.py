"""The neck contract: dict of ``p{k}`` maps in, dict out, shapes declared from the input specs."""

from torch import Tensor, nn

from detect.structures import FeatureSpec

__all__ = ["Neck", "select_specs"]


class Neck(nn.Module):
    """Base class for necks. Subclasses set ``out_specs`` in ``__init__``."""

    out_specs: dict[str, FeatureSpec]

    def forward(self, features: dict[str, Tensor]) -> dict[str, Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError


def select_specs(
    in_specs: dict[str, FeatureSpec], in_features: tuple[str, ...] | list[str]
) -> list[FeatureSpec]:
    """Pick ``in_features`` from ``in_specs`` and check that their strides double from one to the next."""
    missing = [key for key in in_features if key not in in_specs]
    if missing:
        raise ValueError(
            f"in_features {list(missing)} not produced by the backbone, which gives {list(in_specs)}"
        )
    specs = [in_specs[key] for key in in_features]
    for finer, coarser in zip(specs, specs[1:]):
        if coarser.stride != 2 * finer.stride:
            raise ValueError(
                f"in_features {list(in_features)} must have log2-contiguous strides, got "
                f"{[spec.stride for spec in specs]}"
            )
    return specs
