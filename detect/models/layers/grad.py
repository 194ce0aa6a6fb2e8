"""Gradient scaling: let a branch's loss reach shared features at reduced strength."""

from torch import Tensor

__all__ = ["scale_grad"]


def scale_grad(x: Tensor, factor: float) -> Tensor:
    """``x`` forward; ``factor`` times the gradient backward (0 detaches, 1 is the identity)."""
    if factor == 1:
        return x
    if factor == 0:
        return x.detach()
    return x.detach() + factor * (x - x.detach())
