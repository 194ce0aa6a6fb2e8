"""Plain Vision Transformer with a simple feature pyramid (ViTDet-style) for dense prediction."""

from __future__ import annotations

import timm
from timm.models.vision_transformer import VisionTransformer
from torch import Tensor

from detect.models.backbones._weights import (
    LoadReport,
    load_matching,
    read_state_dict,
    resample_pos_embed,
    strip_prefixes,
)
from detect.models.backbones.base import Backbone
from detect.models.backbones.hub import timm_pretrained
from detect.models.necks.simple_pyramid import SimpleFeaturePyramid
from detect.structures import FeatureSpec

__all__ = ["ViT"]


class ViT(Backbone):
    """A timm ``VisionTransformer`` trunk whose last stride-16 tokens feed a simple feature pyramid.

    Position embeddings are resampled on the fly (``dynamic_img_size``), so any input whose sides
    are multiples of 32 works.

    Args:
        embed_dim: token width (192 for DeiT-Tiny, 384 for DeiT-Small, 768 for Base).
        depth: number of transformer blocks.
        num_heads: attention heads per block.
        patch_size: side of the square patches; the trunk's stride.
        pyramid_channels: channels of each output level.
        drop_path_rate: stochastic depth at the last block.
        weights: local file (timm/DeiT state dict) to initialise the trunk from; position
            embeddings of another grid size are resampled.
        pretrained: load ``hub_name``'s ImageNet weights from timm's hub.
        hub_name: the timm model whose weights ``pretrained`` loads (same width, depth and heads).
        freeze_at: freeze the patch embedding and this many blocks (0: embedding only; null: none).
    """

    def __init__(
        self,
        embed_dim: int = 192,
        depth: int = 12,
        num_heads: int = 3,
        patch_size: int = 16,
        pyramid_channels: int = 128,
        drop_path_rate: float = 0.0,
        weights: str | None = None,
        pretrained: bool = False,
        hub_name: str | None = None,
        freeze_at: int | None = None,
    ) -> None:
        super().__init__()
        if patch_size != 16:
            raise ValueError(
                f"patch_size must be 16 (the pyramid is built around stride 16), got {patch_size}"
            )
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim ({embed_dim}) must be divisible by num_heads ({num_heads})")
        self.trunk = VisionTransformer(
            img_size=224,
            patch_size=patch_size,
            embed_dim=embed_dim,
            depth=depth,
            num_heads=num_heads,
            num_classes=0,
            global_pool="",
            class_token=True,
            dynamic_img_size=True,
            drop_path_rate=drop_path_rate,
        )
        self.load_report = None
        if pretrained:
            if not hub_name:
                raise ValueError(
                    "backbone.pretrained=true needs backbone.hub_name, e.g. deit_small_patch16_224"
                )
            with timm_pretrained(hub_name, pretrained=True):
                source = timm.create_model(hub_name, pretrained=True, num_classes=0)
            self.load_report = self.load_state_dict_resized(source.state_dict(), name=hub_name)
        if weights:
            self.load_report = self.load_state_dict_resized(read_state_dict(weights), name=weights)
        self.pyramid = SimpleFeaturePyramid(embed_dim, pyramid_channels)
        self._set_out_specs({f"p{level}": FeatureSpec(pyramid_channels, 2**level) for level in (3, 4, 5)})
        self.freeze(freeze_at)

    def load_state_dict_resized(self, state_dict: dict[str, Tensor], name: str = "") -> LoadReport:
        """Load trunk weights, resampling position embeddings trained at another resolution."""
        state_dict = strip_prefixes(state_dict, set(self.trunk.state_dict()))
        return load_matching(self.trunk, resample_pos_embed(state_dict, self.trunk), name=name)

    def stage_prefixes(self) -> list[list[str]]:
        stem = ["trunk.patch_embed", "trunk.cls_token", "trunk.pos_embed"]
        return [stem] + [[f"trunk.blocks.{index}"] for index in range(len(self.trunk.blocks))]

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        (tokens,) = self.trunk.forward_intermediates(
            images, indices=1, output_fmt="NCHW", intermediates_only=True
        )
        return self.pyramid(tokens)
