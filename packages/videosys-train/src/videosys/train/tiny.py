"""A small Latte-shaped text-to-video DiT built from core layers: the tiny config's model.

Alternating spatial and temporal adaLN-single blocks (spatial ones with cross-attention to the
caption), 2-D sin-cos positions along the spatial axis and 1-D along the temporal axis, as Latte.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from videosys.core import AdaLNBlock, AttentionAxis, Conditioning, STBackbone
from videosys.core.layers import (
    AxisEmbedding,
    CaptionProjection,
    FinalLayer,
    PatchEmbed2D,
    TimestepEmbedder,
    sincos_1d,
    sincos_2d,
    unpatchify,
)

__all__ = ["TinyLatte", "TinyLatteConfig"]


@dataclass
class TinyLatteConfig:
    """Sizes of :class:`TinyLatte`; the defaults train on a laptop CPU in minutes."""

    in_channels: int = 3
    num_frames: int = 8
    sample_size: int = 16
    patch_size: int = 2
    hidden_size: int = 64
    depth: int = 2
    """Pairs of (spatial, temporal) blocks."""
    num_heads: int = 4
    caption_dim: int = 32
    learn_sigma: bool = True


class TinyLatte(STBackbone):
    """``forward(latents (B, C, T, H, W), timestep (B,), text (B, L, Dc), text_mask (B, L)) -> (B, C', T, H, W)``."""

    def __init__(self, config: TinyLatteConfig) -> None:
        super().__init__()
        self.config = config
        dim, p = config.hidden_size, config.patch_size
        if config.sample_size % p:
            raise ValueError(f"sample_size {config.sample_size} is not divisible by patch_size {p}")
        grid = config.sample_size // p
        self.out_channels = config.in_channels * (2 if config.learn_sigma else 1)
        self.patch_embed = PatchEmbed2D(p, config.in_channels, dim)
        self.spatial_pos = AxisEmbedding(sincos_2d(grid, grid, dim).float(), AttentionAxis.SPATIAL)
        self.temporal_pos = AxisEmbedding(
            sincos_1d(torch.arange(config.num_frames), dim).float(), AttentionAxis.TEMPORAL
        )
        self.t_embedder = TimestepEmbedder(dim)
        self.t_block = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))
        self.caption_projection = CaptionProjection(config.caption_dim, dim)
        self.blocks = nn.ModuleList(
            AdaLNBlock(dim, config.num_heads, axis, cross_attention=axis == "spatial")
            for _ in range(config.depth)
            for axis in ("spatial", "temporal")
        )
        self.final = FinalLayer(dim, p * p * self.out_channels)

    def embed(
        self, latents: torch.Tensor, timestep: torch.Tensor, text: torch.Tensor, text_mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, Conditioning]:
        x = self.temporal_pos(self.spatial_pos(self.patch_embed(latents)))
        t = self.t_embedder(timestep)
        grid = (latents.shape[-2] // self.config.patch_size, latents.shape[-1] // self.config.patch_size)
        cond = Conditioning(
            modulation=self.t_block(t),
            context=self.caption_projection(text),
            context_mask=text_mask,
            extras={"t": t, "grid": grid},
        )
        return x, cond

    def head(self, x: torch.Tensor, cond: Conditioning) -> torch.Tensor:
        p = self.config.patch_size
        return unpatchify(self.final(x, cond.extras["t"]), self.out_channels, (1, p, p), cond.extras["grid"])
