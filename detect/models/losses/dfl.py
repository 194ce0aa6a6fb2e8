"""Distribution Focal Loss (Li et al., Generalized Focal Loss, 2020)."""

import torch.nn.functional as F
from torch import Tensor

__all__ = ["distribution_focal_loss"]


def distribution_focal_loss(logits: Tensor, target: Tensor) -> Tensor:
    """Cross-entropy towards the two bins around a continuous target, weighted by proximity.

    Args:
        logits: ``(..., R)`` unnormalised scores over ``R`` integer bins.
        target: ``(...)`` continuous targets in ``[0, R - 1)``.

    Returns:
        ``(...)`` per-element loss.
    """
    left = target.long()
    right = left + 1
    weight_left = right.to(target.dtype) - target
    weight_right = 1.0 - weight_left
    log_probs = F.log_softmax(logits.float(), dim=-1)
    return -(
        log_probs.gather(-1, left.unsqueeze(-1)).squeeze(-1) * weight_left
        + log_probs.gather(-1, right.unsqueeze(-1)).squeeze(-1) * weight_right
    )
