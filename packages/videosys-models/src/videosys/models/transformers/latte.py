"""Latte-1 (text-to-video) on the VideoSys core: spatial and temporal adaLN-single blocks, interleaved.

Numerics follow diffusers' ``LatteTransformer3DModel``; :meth:`LatteTransformer.from_diffusers_config`
and :meth:`LatteTransformer.convert_diffusers_state_dict` read the ``transformer/`` folder of the
published Latte-1 checkpoint.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from videosys.core import AdaLNBlock, AttentionAxis, Conditioning
from videosys.core.layers import AxisEmbedding, CaptionProjection, FinalLayer, TimestepEmbedder, sincos_1d

from ..loading import DIFFUSERS_BLOCK_RULES, rename_keys
from .common import (
    ADALN_SINGLE_RULES,
    PatchedBackbone,
    adaln_single_t2v_args,
    batch_timesteps,
    check_text_features,
    require_config,
    text_key_mask,
)

__all__ = ["LatteBlock", "LatteTransformer", "latte_arguments"]


class LatteBlock(AdaLNBlock):
    """Latte's adaLN-single block; spatial blocks cross-attend to the caption, temporal blocks do not.

    A temporal block is skipped when the caller turns temporal attention off, and the first one adds
    the temporal position table (for more than one frame) before attending, where Latte adds it.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        axis: AttentionAxis,
        *,
        context_dim: int,
        qkv_bias: bool,
        norm_eps: float,
        temporal_positions: AxisEmbedding | None = None,
    ) -> None:
        spatial = axis is AttentionAxis.SPATIAL
        super().__init__(
            dim,
            num_heads,
            axis,
            cross_attention=spatial,
            context_dim=context_dim if spatial else None,
            modulation="table",
            qkv_bias=qkv_bias,
            norm_eps=norm_eps,
        )
        self.temporal_positions = temporal_positions

    def forward(self, x: torch.Tensor, cond: Conditioning) -> torch.Tensor:
        if self.axis is AttentionAxis.TEMPORAL:
            if not cond.extras["temporal_attention"]:
                return x
            if self.temporal_positions is not None and cond.extras["num_frames"] > 1:
                x = self.temporal_positions(x)
        return super().forward(x, cond)


class LatteTransformer(PatchedBackbone):
    """Latte's denoiser: ``(B, C, T, H, W)`` latents, timesteps and T5 features to noise and variance.

    ``blocks`` alternates spatial block ``i`` and temporal block ``i``. The output has ``out_channels``
    channels: the predicted noise, then (Latte-1, learned sigma) the variance interpolation values.
    ``temporal_interpolation_scale`` divides the frame positions of the temporal table.
    """

    def __init__(
        self,
        *,
        num_layers: int = 28,
        num_heads: int = 16,
        head_dim: int = 72,
        in_channels: int = 4,
        out_channels: int = 8,
        patch_size: int = 2,
        sample_size: int = 64,
        caption_channels: int = 4096,
        video_length: int = 16,
        attention_bias: bool = True,
        norm_eps: float = 1e-6,
        temporal_interpolation_scale: float = 1.0,
    ) -> None:
        dim = num_heads * head_dim
        super().__init__(
            dim, in_channels, out_channels, patch_size, sample_size, interpolation_scale=max(sample_size // 64, 1)
        )
        self.t_embedder = TimestepEmbedder(dim)
        self.t_block = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))
        self.caption_projection = CaptionProjection(caption_channels, dim)
        self.video_length = video_length
        """Latent frames the temporal position table covers: the most one video can have."""
        temporal_table = sincos_1d(torch.arange(video_length) / temporal_interpolation_scale, dim).float()
        blocks = []
        for i in range(num_layers):
            common = {"context_dim": dim, "qkv_bias": attention_bias, "norm_eps": norm_eps}
            blocks.append(LatteBlock(dim, num_heads, AttentionAxis.SPATIAL, **common))
            positions = AxisEmbedding(temporal_table, AttentionAxis.TEMPORAL) if i == 0 else None
            blocks.append(LatteBlock(dim, num_heads, AttentionAxis.TEMPORAL, temporal_positions=positions, **common))
        self.blocks = nn.ModuleList(blocks)
        self.final = FinalLayer(dim, patch_size * patch_size * out_channels, modulation="table")

    def embed(
        self,
        latents: torch.Tensor,
        timestep: torch.Tensor | float,
        encoder_hidden_states: torch.Tensor,
        encoder_attention_mask: torch.Tensor | None = None,
        enable_temporal_attentions: bool = True,
    ) -> tuple[torch.Tensor, Conditioning]:
        """Patchify ``latents: (B, C, T, H, W)``, embed the timestep and project the caption ``(B, L, Cc)``.

        ``encoder_attention_mask``: ``(B, L)`` (or ``(B, 1, L)``), boolean or 1/0 as diffusers' Latte takes it,
        nonzero for real caption tokens.
        ``enable_temporal_attentions=False`` skips the temporal blocks (Latte-0's image sampling; Latte-1
        keeps them on, also for single frames).
        """
        x, grid = self.patchify(latents)
        b, frames = latents.shape[0], latents.shape[2]
        t_emb = self.t_embedder(batch_timesteps(timestep, b, x.device), dtype=x.dtype)
        check_text_features(encoder_hidden_states, b, self.caption_projection.linear_1.in_features)
        cond = Conditioning(
            modulation=self.t_block(t_emb),
            context=self.caption_projection(encoder_hidden_states),
            context_mask=text_key_mask(encoder_attention_mask, b, encoder_hidden_states.shape[1], x.device),
            extras={
                "embedded_timestep": t_emb,
                "grid": grid,
                "num_frames": frames,
                "temporal_attention": bool(enable_temporal_attentions),
            },
        )
        return x, cond

    def head(self, x: torch.Tensor, cond: Conditioning) -> torch.Tensor:
        x = self.final(x, cond.extras["embedded_timestep"])
        return self.unpatchify(x, cond.extras["grid"])

    @classmethod
    def from_diffusers_config(cls, config: dict[str, Any]) -> LatteTransformer:
        """Build the architecture that a diffusers ``LatteTransformer3DModel`` ``config.json`` describes."""
        require_config(
            config,
            "LatteTransformer3DModel",
            norm_type="ada_norm_single",
            activation_fn="gelu-approximate",
            norm_elementwise_affine=False,
        )
        return cls(**latte_arguments(config, "LatteTransformer3DModel"))

    @staticmethod
    def convert_diffusers_state_dict(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """diffusers' Latte key names to ours; keys it does not know pass through unchanged."""
        return rename_keys(state_dict, _LATTE_RULES)


def latte_arguments(config: dict[str, Any], model: str) -> dict[str, Any]:
    """Constructor arguments of :class:`LatteTransformer` from a diffusers-style Latte ``config.json`` (``model``
    names its class in errors), with diffusers' defaults for absent fields."""
    return {
        **adaln_single_t2v_args(config, model),
        "sample_size": config.get("sample_size", 64),
        "video_length": config.get("video_length", 16),
    }


_LATTE_RULES = [
    *ADALN_SINGLE_RULES,
    (r"^transformer_blocks\.(\d+)\.", lambda m: f"blocks.{2 * int(m.group(1))}."),
    (r"^temporal_transformer_blocks\.(\d+)\.", lambda m: f"blocks.{2 * int(m.group(1)) + 1}."),
    *DIFFUSERS_BLOCK_RULES,
]
