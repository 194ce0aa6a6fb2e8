"""Losses that torchvision.ops does not provide."""

from detect.models.losses.dfl import distribution_focal_loss

__all__ = ["distribution_focal_loss"]
