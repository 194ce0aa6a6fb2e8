"""Fold BatchNorm into the convolution before it, for inference."""

from __future__ import annotations

import logging

import torch.fx as fx
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.utils.fusion import fuse_conv_bn_eval

__all__ = ["fuse_conv_bn"]

log = logging.getLogger(__name__)


class _NormLeafTracer(fx.Tracer):
    """Traces through everything but leaves every BatchNorm (timm's BatchNormAct2d too) a call."""

    def is_leaf_module(self, module: nn.Module, name: str) -> bool:
        return isinstance(module, _BatchNorm) or super().is_leaf_module(module, name)


def _foldable(conv: nn.Module, norm: nn.Module) -> bool:
    return (
        isinstance(conv, nn.Conv2d)
        and isinstance(norm, nn.BatchNorm2d)
        and norm.track_running_stats
        and norm.running_mean is not None
        and conv.out_channels == norm.num_features
    )


def _after_fold(norm: nn.Module) -> nn.Module:
    """What replaces a folded norm: nothing, or the activation a norm+act module applied after it."""
    if type(norm) is nn.BatchNorm2d:
        return nn.Identity()
    act, drop = getattr(norm, "act", None), getattr(norm, "drop", None)
    if isinstance(act, nn.Module) and list(norm.named_children()) == [("drop", drop), ("act", act)]:
        return nn.Sequential(drop, act)
    raise TypeError(type(norm).__name__)


def _fold(root: nn.Module, conv_name: str, norm_name: str) -> bool:
    conv, norm = root.get_submodule(conv_name), root.get_submodule(norm_name)
    try:
        replacement = _after_fold(norm)
    except TypeError:
        return False
    fused = fuse_conv_bn_eval(conv, norm)
    root.set_submodule(conv_name, fused)
    root.set_submodule(norm_name, replacement)
    return True


def _fold_sequentials(model: nn.Module) -> int:
    fused = 0
    for module in model.modules():
        if not isinstance(module, nn.Sequential):
            continue
        names = list(module._modules)
        for first, second in zip(names, names[1:]):
            conv, norm = module._modules[first], module._modules[second]
            if _foldable(conv, norm) and _fold(module, first, second):
                fused += 1
    return fused


def _graph_pairs(module: nn.Module) -> list[tuple[str, str]]:
    """(conv, norm) names where the norm's only input is the conv's output and nothing else uses it."""
    graph = _NormLeafTracer().trace(module)
    calls: dict[str, int] = {}
    for node in graph.nodes:
        if node.op == "call_module":
            calls[node.target] = calls.get(node.target, 0) + 1
    pairs = []
    for node in graph.nodes:
        if node.op != "call_module" or len(node.args) != 1 or node.kwargs:
            continue
        source = node.args[0]
        if not (isinstance(source, fx.Node) and source.op == "call_module" and len(source.users) == 1):
            continue
        conv_name, norm_name = str(source.target), str(node.target)
        if calls[conv_name] == 1 and calls[norm_name] == 1:
            if _foldable(module.get_submodule(conv_name), module.get_submodule(norm_name)):
                pairs.append((conv_name, norm_name))
    return pairs


def _fold_graphs(module: nn.Module) -> int:
    """Fold the pairs fx sees in ``module``'s forward; where it cannot trace, in each child's."""
    if not any(isinstance(m, _BatchNorm) for m in module.modules()) or isinstance(
        module, nn.Sequential | _BatchNorm
    ):
        return (
            sum(_fold_graphs(child) for child in module.children())
            if isinstance(module, nn.Sequential)
            else 0
        )
    try:
        pairs = _graph_pairs(module)
    except Exception:  # fx cannot trace data-dependent Python; its children may still be traceable
        return sum(_fold_graphs(child) for child in module.children())
    return sum(_fold(module, conv, norm) for conv, norm in pairs)


def fuse_conv_bn(model: nn.Module) -> int:
    """Fold every ``BatchNorm2d`` that only ever sees one ``Conv2d``'s output into it (in place).

    Pairs in a ``Sequential`` are found by position; the rest (torchvision's ResNet
    ``conv1``/``bn1``, timm's conv + ``BatchNormAct2d``) by tracing each module's forward with
    ``torch.fx``, which shows that the norm's input is the conv's output and that nothing else
    reads it. A module fx cannot trace is searched through its children instead.

    The model must be in eval mode (the running statistics are what gets folded).

    Returns:
        the number of pairs folded.
    """
    if model.training:
        raise ValueError("fuse_conv_bn folds running statistics: call model.eval() first")
    fused = _fold_sequentials(model)
    fused += _fold_graphs(model)
    return fused
