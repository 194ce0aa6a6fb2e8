"""Rebuilding a trained Detector from a checkpoint file without Lightning or Hydra.

A training checkpoint carries the resolved config and the class map (``hyper_parameters``) and
the EMA weights (``state_dict``, keys under ``model.``). Reading it needs only ``torch.load`` with
``weights_only=True`` (nothing is unpickled but tensors and plain containers); the model is built
from the config's ``_target_`` entries by :func:`build_from_config`, which accepts only targets
inside this package, so a checkpoint cannot make the loader call anything else.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from detect import __version__
from detect.data.coco import CategoryMap
from detect.data.transforms import val_image_size
from detect.models.detector import Detector

__all__ = [
    "CHECKPOINT_FORMAT",
    "CheckpointError",
    "TrainedModel",
    "build_from_config",
    "load_checkpoint",
]

# Bumped when a checkpoint written by this version can no longer be read by an older one.
CHECKPOINT_FORMAT = 1
_ALLOWED_TARGETS = ("detect.",)
_KNOWN_KEYS = {"_target_", "_partial_"}


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or does not fit this version of the model code."""


def inference_size(data: Mapping[str, Any]) -> int:
    """The side a run's model is validated and shipped at: its training ``data.image_size``
    scaled by ``data.val_scale`` where the run set one."""
    return val_image_size(int(data["image_size"]), float(data.get("val_scale") or 1.0))


@dataclass
class TrainedModel:
    """What a checkpoint holds for inference.

    Attributes:
        model: the detector, in eval mode, with the checkpoint's (EMA) weights.
        categories: contiguous labels <-> category ids, names and keypoints.
        config: the resolved training config.
        path: the file it was read from.
    """

    model: Detector
    categories: CategoryMap
    config: dict[str, Any]
    path: Path

    @property
    def image_size(self) -> int:
        """The side it predicts at (:func:`inference_size` of its data config)."""
        return inference_size(self.config["data"])

    @property
    def choices(self) -> dict[str, str]:
        """The config names the run was composed from (``backbone``, ``neck``, ``head``...).

        Runs from before these were saved get the component class names instead.
        """
        saved = self.config.get("choices") or {}
        model = self.config["model"]
        return {
            part: saved.get(part) or str(model[part]["_target_"]).rsplit(".", 1)[-1]
            for part in ("backbone", "neck", "head")
        }


def _import(target: str) -> Any:
    if not target.startswith(_ALLOWED_TARGETS):
        raise CheckpointError(f"refusing to build {target!r}: only detect components can be loaded")
    module_name, _, attribute = target.rpartition(".")
    try:
        return getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as error:
        raise CheckpointError(
            f"{target} does not exist in detect {__version__}; the checkpoint was written by another version"
        ) from error


def build_from_config(node: Any) -> Any:
    """Instantiate a resolved config tree: ``_target_`` nodes are called, ``_partial_`` ones wrapped.

    The subset of Hydra's ``instantiate`` the model configs use, so that a deployed model does not
    need Hydra.
    """
    if isinstance(node, dict):
        arguments = {key: build_from_config(value) for key, value in node.items() if not key.startswith("_")}
        if "_target_" not in node:
            return arguments
        unknown = {key for key in node if key.startswith("_") and key.endswith("_")} - _KNOWN_KEYS
        if unknown:
            raise CheckpointError(f"unsupported config keys {sorted(unknown)} in {node['_target_']}")
        target = _import(str(node["_target_"]))
        if node.get("_partial_"):
            return functools.partial(target, **arguments)
        return target(**arguments)
    if isinstance(node, list | tuple):
        return [build_from_config(value) for value in node]
    return node


def _read(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        contents = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # a damaged file fails in many ways (OSError, IndexError, UnpicklingError ...)
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(
            f"cannot read {path} as a checkpoint (truncated, corrupt or another format): {first}"
        ) from error
    if not isinstance(contents, dict) or "state_dict" not in contents:
        raise CheckpointError(f"{path} is not a detect training checkpoint (no state_dict)")
    hparams = contents.get("hyper_parameters") or {}
    if "config" not in hparams or "categories" not in hparams:
        raise CheckpointError(
            f"{path} holds weights but no detect config and class map; "
            "use init_from= or backbone.weights= to start a run from it"
        )
    target = str((hparams["config"].get("model") or {}).get("_target_", ""))
    if target.endswith("Classifier"):
        raise CheckpointError(
            f"{path} is a classifier (head=classify), not a detector: start a detector from it with "
            f"init_from={path}"
        )
    written = contents.get("detect", {})
    if int(written.get("format", 1)) > CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"{path} was written by detect {written.get('version')} (checkpoint format {written['format']}); "
            f"this is detect {__version__}, which reads format {CHECKPOINT_FORMAT}: upgrade detect"
        )
    return contents


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> TrainedModel:
    """Read a training checkpoint and rebuild its detector (eval mode) on ``device``.

    Raises:
        FileNotFoundError: no such file.
        CheckpointError: not a checkpoint, or one whose config or weights do not fit this version.
    """
    path = Path(path)
    contents = _read(path)
    config = contents["hyper_parameters"]["config"]
    categories = CategoryMap.from_list(contents["hyper_parameters"]["categories"])
    try:
        factory = build_from_config(config["model"])
        model = factory(num_classes=len(categories), keypoints=categories.keypoints)
    except TypeError as error:
        raise CheckpointError(
            f"the model config in {path} does not fit detect {__version__}: {error}"
        ) from error
    prefix = "model."
    state = {
        key[len(prefix) :]: value for key, value in contents["state_dict"].items() if key.startswith(prefix)
    }
    missing, unexpected = _compare(model, state)
    if missing or unexpected:
        version = contents.get("detect", {}).get("version")
        written = f"detect {version}" if version else "an earlier version of detect"
        raise CheckpointError(
            f"the weights in {path} (written by {written}) do not fit this version's model "
            f"({__version__}): {len(missing)} missing, {len(unexpected)} unexpected or mis-shaped, "
            f"e.g. {(missing + unexpected)[:3]}"
        )
    model.load_state_dict(state)
    return TrainedModel(model.to(device).eval(), categories, config, path)


def _compare(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> tuple[list[str], list[str]]:
    own = model.state_dict()
    missing = [key for key in own if key not in state]
    wrong = [key for key, value in state.items() if key not in own or own[key].shape != value.shape]
    return missing, wrong
