"""Optimizer parameter groups: weight decay by parameter kind, learning rate by backbone stage."""

from __future__ import annotations

import logging
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn

__all__ = ["build_optimizer", "configure_optimization", "parameter_groups"]

log = logging.getLogger(__name__)

_NO_DECAY_SUFFIXES = (".bias", "pos_embed", "cls_token", "reg_token")


def _lr_scales(model: nn.Module, backbone_lr_mult: float, layer_decay: float | None) -> dict[str, float]:
    """Learning-rate factor of each backbone parameter that is not at 1."""
    if backbone_lr_mult == 1.0 and not layer_decay:
        return {}
    backbone = getattr(model, "backbone", None)
    if backbone is None:
        raise ValueError("optim.backbone_lr_mult/layer_decay need a model with a .backbone")
    try:
        stage_of = backbone.stage_of()
        num_stages = len(backbone.stage_prefixes())
    except NotImplementedError:
        if layer_decay:
            raise ValueError(
                f"optim.layer_decay needs a backbone that declares its stages; {type(backbone).__name__} does not"
            ) from None
        # No stages known: the multiplier applies to the whole backbone.
        stage_of, num_stages = {name: 0 for name, _ in backbone.named_parameters()}, 0
    scales = {}
    for name, stage in stage_of.items():
        scale = backbone_lr_mult
        if layer_decay:
            # BEiT/MAE-style: the last stage gets layer_decay**1, the stem layer_decay**num_stages,
            # and everything after the backbone (neck, head) the full rate.
            scale *= layer_decay ** (num_stages - stage)
        scales[f"backbone.{name}"] = scale
    return scales


def parameter_groups(
    model: nn.Module,
    weight_decay: float,
    lr: float,
    backbone_lr_mult: float = 1.0,
    layer_decay: float | None = None,
) -> list[dict[str, Any]]:
    """Parameter groups for a torch optimizer.

    Weight decay applies to conv/linear weights only, not to norms, biases, embeddings and tokens.
    Backbone parameters inside one of its stages (see ``Backbone.stage_prefixes``) learn at
    ``lr * backbone_lr_mult``, further scaled by ``layer_decay ** (num_stages - stage)`` when
    ``layer_decay`` is set; new layers the backbone adds (a simple pyramid), the neck and the head
    learn at ``lr``. Frozen parameters are left out.

    Returns:
        groups with ``params``, ``weight_decay``, ``lr`` and ``lr_scale`` (the factor on ``lr``).
    """
    if backbone_lr_mult <= 0:
        raise ValueError(f"optim.backbone_lr_mult must be > 0, got {backbone_lr_mult}")
    if layer_decay is not None and not 0 < layer_decay <= 1:
        raise ValueError(f"optim.layer_decay must be in (0, 1], got {layer_decay}")
    scales = _lr_scales(model, backbone_lr_mult, layer_decay)
    groups: dict[tuple[float, bool], dict[str, Any]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        no_decay = param.ndim <= 1 or name.endswith(_NO_DECAY_SUFFIXES)
        scale = scales.get(name, 1.0)
        group = groups.setdefault(
            (scale, no_decay),
            {
                "params": [],
                "weight_decay": 0.0 if no_decay else weight_decay,
                "lr": lr * scale,
                "lr_scale": scale,
            },
        )
        group["params"].append(param)
    ordered = [groups[key] for key in sorted(groups, key=lambda key: (-key[0], key[1]))]
    if len(ordered) > 2:
        log.info("%d parameter groups, lr factors %s", len(ordered), sorted({g["lr_scale"] for g in ordered}))
    return ordered


def build_optimizer(model: nn.Module, optim_cfg: dict[str, Any]) -> torch.optim.Optimizer:
    """The optimizer of an ``optim`` config (a partial ``_target_``) over :func:`parameter_groups`.

    ``weight_decay``, ``backbone_lr_mult`` and ``layer_decay`` are read here, per group; the rest
    of the config goes to the optimizer class.
    """
    optim_cfg = dict(optim_cfg)
    groups = parameter_groups(
        model,
        weight_decay=optim_cfg.pop("weight_decay", 0.0),
        lr=optim_cfg["lr"],
        backbone_lr_mult=optim_cfg.pop("backbone_lr_mult", 1.0),
        layer_decay=optim_cfg.pop("layer_decay", None),
    )
    return instantiate(optim_cfg)(groups)


def configure_optimization(model: nn.Module, config: DictConfig, total_steps: int) -> dict[str, Any]:
    """What a LightningModule's ``configure_optimizers`` returns: the ``optim`` config's optimizer
    and the ``sched`` config's scheduler over ``total_steps``, stepped every batch."""
    optimizer = build_optimizer(model, OmegaConf.to_container(config.optim, resolve=True))
    scheduler = instantiate(config.sched)(optimizer, total_steps=total_steps)
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
