"""Wan 2.1 text-to-video on the VideoSys core: full 3-D attention with 3-D RoPE, cross-attention to umT5 text.

Numerics follow diffusers' ``WanTransformer3DModel`` (tested against it); :meth:`WanTransformer.from_diffusers_config`
and :meth:`WanTransformer.convert_diffusers_state_dict` read the ``transformer/`` folder of
``Wan-AI/Wan2.1-T2V-1.3B-Diffusers`` and ``-14B-Diffusers``. Every block is core's adaLN-single block over
``FULL`` attention; what is Wan's own is the query/key RMSNorm over the whole width (before the head split)
and the RoPE split of the head dim, ``t = D - 4 * (D // 6)`` channels for frames and ``2 * (D // 6)`` each for
rows and columns, in adjacent pairs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from videosys.core import AdaLNBlock, AttentionAxis, Conditioning, CrossAttention, SelfAttention, STBackbone, VideoGrid
from videosys.core.layers import (
    CaptionProjection,
    FinalLayer,
    GridRotaryEmbedding,
    PatchEmbed3D,
    RMSNorm,
    TimestepEmbedder,
    unpatchify,
)

from ..loading import DIFFUSERS_BLOCK_RULES, rename_keys
from .common import batch_timesteps, check_text_features, require_config

__all__ = ["WanConditioning", "WanCrossAttention", "WanSelfAttention", "WanTransformer", "wan_rope_split"]


def wan_rope_split(head_dim: int) -> list[int]:
    """Channels of a head rotated by frame, row and column position: Wan's ``(D - 4(D//6), 2(D//6), 2(D//6))``."""
    hw = 2 * (head_dim // 6)
    return [head_dim - 2 * hw, hw, hw]


def _split_heads(x: torch.Tensor, num_heads: int) -> torch.Tensor:
    return x.unflatten(-1, (num_heads, -1))


class WanSelfAttention(SelfAttention):
    """Wan's self-attention: queries and keys RMS-normalised over the whole width, then split into heads."""

    def __init__(self, dim: int, num_heads: int, *, eps: float, rope: GridRotaryEmbedding) -> None:
        super().__init__(dim, num_heads, AttentionAxis.FULL, rope=rope)
        self.norm_q = RMSNorm(dim, eps=eps)
        self.norm_k = RMSNorm(dim, eps=eps)

    def project(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        heads = self.num_heads
        q = _split_heads(self.norm_q(self.to_q(x)), heads)
        k = _split_heads(self.norm_k(self.to_k(x)), heads)
        return q, k, _split_heads(self.to_v(x), heads)


class WanCrossAttention(CrossAttention):
    """Wan's cross-attention to the text: the same whole-width RMSNorm on the queries and the text keys."""

    def __init__(self, dim: int, num_heads: int, *, eps: float) -> None:
        super().__init__(dim, num_heads)
        self.norm_q = RMSNorm(dim, eps=eps)
        self.norm_k = RMSNorm(dim, eps=eps)

    def project(self, x: torch.Tensor, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        heads = self.num_heads
        q = _split_heads(self.norm_q(self.to_q(x)), heads)
        k = _split_heads(self.norm_k(self.to_k(context)), heads)
        return q, k, _split_heads(self.to_v(context), heads)


@dataclass
class WanConditioning(Conditioning):
    """Wan's conditioning: the embedded timestep, which the final layer's modulation adds to its table."""

    embedded_timestep: torch.Tensor | None = None
    """``(B, C)``: the time embedding before the SiLU + linear that makes the blocks' modulation."""


class WanTransformer(STBackbone):
    """Wan 2.1's denoiser: ``(B, C, T, H, W)`` latents, timesteps and umT5 features to the flow velocity.

    The text is cross-attended unmasked, as the original does: the pipeline zero-pads the umT5 features to
    512 tokens and the model sees the padding (through the text projection).
    """

    def __init__(
        self,
        *,
        num_layers: int = 30,
        num_heads: int = 12,
        head_dim: int = 128,
        in_channels: int = 16,
        out_channels: int = 16,
        patch_size: tuple[int, int, int] = (1, 2, 2),
        text_dim: int = 4096,
        freq_dim: int = 256,
        ffn_dim: int = 8960,
        cross_attn_norm: bool = True,
        eps: float = 1e-6,
        rope_max_seq_len: int = 1024,
    ) -> None:
        super().__init__()
        dim = num_heads * head_dim
        self.dim, self.in_channels, self.out_channels = dim, in_channels, out_channels
        self.patch_size = tuple(patch_size)
        self.rope_max_seq_len = rope_max_seq_len
        """The most positions along one grid axis the published RoPE tables cover."""
        self.patch_embed = PatchEmbed3D(self.patch_size, in_channels, dim)
        self.time_embedder = TimestepEmbedder(dim, freq_dim)
        self.time_proj = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))
        self.text_embedder = CaptionProjection(text_dim, dim)
        self.rope = GridRotaryEmbedding(head_dim, "thw", wan_rope_split(head_dim), interleaved=True)
        self.blocks = nn.ModuleList(
            AdaLNBlock(
                dim,
                num_heads,
                AttentionAxis.FULL,
                mlp_dim=ffn_dim,
                norm_eps=eps,
                attention=WanSelfAttention(dim, num_heads, eps=eps, rope=self.rope),
                cross=WanCrossAttention(dim, num_heads, eps=eps),
                cross_norm=cross_attn_norm,
            )
            for _ in range(num_layers)
        )
        self.final = FinalLayer(dim, math.prod(self.patch_size) * out_channels, modulation="table", eps=eps)

    def embed(
        self, latents: torch.Tensor, timestep: torch.Tensor | float, encoder_hidden_states: torch.Tensor
    ) -> tuple[torch.Tensor, WanConditioning]:
        """Patchify ``latents: (B, C, T, H, W)``, embed the timesteps and project the umT5 features ``(B, L, Ct)``."""
        x = self.patch_embed(latents)
        b = latents.shape[0]
        grid = VideoGrid(*(n // p for n, p in zip(latents.shape[2:], self.patch_size)))
        sizes = (grid.frames, grid.height, grid.width)
        if max(sizes) > self.rope_max_seq_len:
            raise ValueError(
                f"token grid {sizes} (T, H, W) exceeds the {self.rope_max_seq_len} positions per axis "
                "this checkpoint's RoPE covers (rope_max_seq_len)"
            )
        check_text_features(encoder_hidden_states, b, self.text_embedder.linear_1.in_features)
        t_emb = self.time_embedder(batch_timesteps(timestep, b, x.device)).to(x.dtype)
        cond = WanConditioning(
            modulation=self.time_proj(t_emb),
            context=self.text_embedder(encoder_hidden_states.to(x.dtype)),
            grid=grid,
            embedded_timestep=t_emb,
        )
        return x, cond

    def head(self, x: torch.Tensor, cond: WanConditioning) -> torch.Tensor:
        x = self.final(x, cond.embedded_timestep)
        return unpatchify(x, self.out_channels, self.patch_size, (cond.grid.height, cond.grid.width))

    @classmethod
    def from_diffusers_config(cls, config: dict[str, Any]) -> WanTransformer:
        """Build the architecture a diffusers ``WanTransformer3DModel`` ``config.json`` describes (text-to-video)."""
        require_config(
            config,
            "WanTransformer3DModel",
            qk_norm="rms_norm_across_heads",
            image_dim=None,
            added_kv_proj_dim=None,
            pos_embed_seq_len=None,
        )
        in_channels = config.get("in_channels", 16)
        return cls(
            num_layers=config.get("num_layers", 40),
            num_heads=config.get("num_attention_heads", 40),
            head_dim=config.get("attention_head_dim", 128),
            in_channels=in_channels,
            out_channels=config.get("out_channels") or in_channels,
            patch_size=tuple(config.get("patch_size", (1, 2, 2))),
            text_dim=config.get("text_dim", 4096),
            freq_dim=config.get("freq_dim", 256),
            ffn_dim=config.get("ffn_dim", 13824),
            cross_attn_norm=config.get("cross_attn_norm", True),
            eps=config.get("eps", 1e-6),
            rope_max_seq_len=config.get("rope_max_seq_len", 1024),
        )

    @staticmethod
    def convert_diffusers_state_dict(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """diffusers' Wan key names to ours (adaLN tables lose their leading 1); unknown keys pass through."""
        renamed = rename_keys(state_dict, _WAN_RULES)
        return {k: v.squeeze(0) if k.endswith("scale_shift_table") and v.dim() == 3 else v for k, v in renamed.items()}


_WAN_RULES = [
    (r"^patch_embedding\.", "patch_embed.proj."),
    (r"^condition_embedder\.time_embedder\.", "time_embedder."),
    (r"^condition_embedder\.time_proj\.", "time_proj.1."),
    (r"^condition_embedder\.text_embedder\.", "text_embedder."),
    (r"^scale_shift_table$", "final.scale_shift_table"),
    (r"^proj_out\.", "final.linear."),
    (r"\.attn1\.norm_([qk])\.", r".attn.inner.norm_\1."),
    (r"\.attn2\.norm_([qk])\.", r".cross.inner.norm_\1."),
    (r"^(blocks\.\d+)\.norm2\.", r"\1.cross.norm."),
    (r"\.ffn\.net\.0\.proj\.", ".mlp.inner.fc1."),
    (r"\.ffn\.net\.2\.", ".mlp.inner.fc2."),
    *DIFFUSERS_BLOCK_RULES,
]
