"""Loading backbone weights from local files, safely, with a report of what matched."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

log = logging.getLogger(__name__)

_PREFIXES = ("module.", "model.", "backbone.", "encoder.", "body.", "trunk.", "state_dict.")
_CONTAINER_KEYS = ("state_dict", "model", "module", "ema", "weights")


class WeightsUnavailableError(RuntimeError):
    """Pretrained weights could not be fetched (no network, no cache)."""


@dataclass
class LoadReport:
    """What happened when a state dict was loaded into a module."""

    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)

    def summary(self, examples: int = 3) -> str:
        """Counts, and the first ``examples`` names of each kind that did not load."""
        text = (
            f"loaded {len(self.loaded)}, missing {len(self.missing)}, unexpected {len(self.unexpected)}, "
            f"shape mismatch {len(self.mismatched)}"
        )
        for label, names in (
            ("missing", self.missing),
            ("unexpected", self.unexpected),
            ("mismatch", self.mismatched),
        ):
            if names and examples:
                more = f" (+{len(names) - examples} more)" if len(names) > examples else ""
                text += f"; {label}: {', '.join(names[:examples])}{more}"
        return text


def read_state_dict(path: str | Path) -> dict[str, Tensor]:
    """Read tensors from a ``.safetensors``, ``.pt``, ``.pth`` or ``.ckpt`` file without unpickling objects."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises UnpicklingError or RuntimeError depending on the content
        raise ValueError(
            f"{path} holds more than tensors (weights_only loading refused it: {error}); "
            "save it with torch.save(model.state_dict()) or as .safetensors"
        ) from error
    for key in _CONTAINER_KEYS:
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict):
        raise ValueError(f"{path} does not hold a state dict (found {type(obj).__name__})")
    return {key: value for key, value in obj.items() if isinstance(value, Tensor)}


def strip_prefixes(state_dict: dict[str, Tensor], reference_keys: set[str]) -> dict[str, Tensor]:
    """Remove wrapper prefixes (``module.``, ``backbone.`` ...) until the keys meet ``reference_keys``."""
    for _ in range(3):
        if any(key in reference_keys for key in state_dict):
            break
        for prefix in _PREFIXES:
            if any(key.startswith(prefix) for key in state_dict):
                state_dict = {key.removeprefix(prefix): value for key, value in state_dict.items()}
                break
        else:
            break
    return state_dict


def load_matching(module: nn.Module, state_dict: dict[str, Tensor], name: str = "") -> LoadReport:
    """Load the tensors whose names and shapes match; report the rest instead of failing."""
    own = module.state_dict()
    state_dict = strip_prefixes(state_dict, set(own))
    report = LoadReport()
    to_load = {}
    for key, value in state_dict.items():
        if key not in own:
            report.unexpected.append(key)
        elif own[key].shape != value.shape:
            report.mismatched.append(key)
        else:
            to_load[key] = value
            report.loaded.append(key)
    report.missing = [key for key in own if key not in to_load]
    module.load_state_dict(to_load, strict=False)
    log.info("weights %s: %s", name, report.summary())
    return report


def resample_pos_embed(state_dict: dict[str, Tensor], module: nn.Module) -> dict[str, Tensor]:
    """Resample a ViT's absolute position embeddings in ``state_dict`` to ``module``'s patch grid.

    Weights trained at another resolution (384 px, a 24x24 grid) then load into a 224 px model
    (14x14); ``module`` is a timm ViT-like model with ``pos_embed``, ``patch_embed.grid_size`` and
    ``num_prefix_tokens``. Anything else is returned unchanged.
    """
    theirs = state_dict.get("pos_embed")
    own = getattr(module, "pos_embed", None)
    grid = getattr(getattr(module, "patch_embed", None), "grid_size", None)
    if theirs is None or own is None or grid is None or theirs.shape == own.shape:
        return state_dict
    from timm.layers import resample_abs_pos_embed

    prefix = getattr(module, "num_prefix_tokens", 1)
    resampled = resample_abs_pos_embed(theirs, new_size=list(grid), num_prefix_tokens=prefix)
    log.info("position embeddings resampled from %s to %s", tuple(theirs.shape), tuple(resampled.shape))
    return {**state_dict, "pos_embed": resampled}
