"""BatchNorm settings for a whole model."""

from torch import nn

__all__ = ["set_batchnorm"]


def set_batchnorm(model: nn.Module, eps: float | None = None, momentum: float | None = None) -> None:
    """Give every BatchNorm of ``model`` this ``eps`` and running-average ``momentum`` (``None``
    keeps each layer's own). Neither is a weight: the model config carries them, so a model rebuilt
    from its checkpoint (export, serving) normalizes as it trained."""
    if eps is not None and not (isinstance(eps, int | float) and eps > 0):
        raise ValueError(f"model.batchnorm.eps must be a positive number, got {eps!r}")
    if momentum is not None and not (isinstance(momentum, int | float) and 0 < momentum <= 1):
        raise ValueError(f"model.batchnorm.momentum must be in (0, 1], got {momentum!r}")
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            if eps is not None:
                module.eps = float(eps)
            if momentum is not None:
                module.momentum = float(momentum)
