"""Plain Vision Transformer with a simple feature pyramid (ViTDet-style) for dense prediction."""

from __future__ import annotations

from timm.models.vision_transformer import VisionTransformer
from torch import Tensor

from detect.models.backbones._weights import load_matching, read_state_dict
from detect.models.backbones.base import Backbone
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
        weights: local file (timm/DeiT state dict) to initialise the trunk from.
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
        if weights:
            load_matching(self.trunk, read_state_dict(weights), name=weights)
        self.pyramid = SimpleFeaturePyramid(embed_dim, pyramid_channels)
        self._set_out_specs({f"p{level}": FeatureSpec(pyramid_channels, 2**level) for level in (3, 4, 5)})

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        (tokens,) = self.trunk.forward_intermediates(
            images, indices=1, output_fmt="NCHW", intermediates_only=True
        )
        return self.pyramid(tokens)
