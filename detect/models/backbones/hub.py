"""Pretrained ImageNet weights from torchvision and timm's hub, failing at once when they cannot come."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
import torchvision

from detect.models.backbones._weights import WeightsUnavailableError

__all__ = ["reachable", "timm_pretrained", "torchvision_weights"]


def reachable(host: str, port: int = 443, timeout: float = 3.0) -> bool:
    """Whether a TCP connection to ``host`` opens within ``timeout`` seconds."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def torchvision_weights(name: str) -> torchvision.models.WeightsEnum:
    """torchvision's default weights for ``name``, fetched now (or found in the torch hub cache)."""
    weights = torchvision.models.get_model_weights(name).DEFAULT
    cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name
    how = (
        f"with no network, download {weights.url} elsewhere and pass backbone.weights=/path/to/file.pth "
        f"(or place it at {cached})"
    )
    if not cached.is_file() and not reachable("download.pytorch.org"):
        raise WeightsUnavailableError(f"cannot fetch torchvision weights {weights}: no network; {how}")
    try:
        weights.get_state_dict(progress=False, check_hash=True)
    except Exception as error:  # urllib raises several unrelated types when the download fails
        raise WeightsUnavailableError(
            f"could not fetch torchvision weights {weights} ({error}); {how}"
        ) from error
    return weights


@contextmanager
def timm_pretrained(name: str, pretrained: bool) -> Iterator[None]:
    """Around ``timm.create_model(name, pretrained=...)``: offline, use only the local cache, and say so.

    Without this, huggingface_hub retries for about a minute before giving up.
    """
    if not pretrained:
        yield
        return
    how = (
        f"with no network, save the weights of {name} elsewhere "
        f"(timm.create_model({name!r}, pretrained=True).state_dict() to a .safetensors or .pth file) and "
        "pass backbone.weights=/path/to/file, or fill the Hugging Face cache (HF_HOME)"
    )
    from huggingface_hub import constants

    online = reachable("huggingface.co")
    previous = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = previous or not online
    try:
        yield
    except (OSError, RuntimeError, ValueError) as error:
        state = "" if online else "no network and not in the local cache; "
        raise WeightsUnavailableError(
            f"cannot load timm's pretrained {name}: {state}{how} ({error})"
        ) from error
    finally:
        constants.HF_HUB_OFFLINE = previous
