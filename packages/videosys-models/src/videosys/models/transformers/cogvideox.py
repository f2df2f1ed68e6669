"""CogVideoX 1.0 (2b and 5b text-to-video) on the VideoSys core: joint text-video attention blocks.

Numerics follow diffusers' ``CogVideoXTransformer3DModel``. The 2b model adds 3-D sin-cos positions to the
video tokens; the 5b model rotates them with a 3-D RoPE, which diffusers' pipeline computes and this backbone
builds in :meth:`CogVideoXTransformer.embed` (a :class:`~videosys.core.VideoGrid` placed as diffusers crops a
smaller video into the trained grid, read by a core :class:`~videosys.core.layers.GridRotaryEmbedding`).
:meth:`CogVideoXTransformer.from_diffusers_config` and :meth:`CogVideoXTransformer.convert_diffusers_state_dict`
read the ``transformer/`` folder of ``THUDM/CogVideoX-2b`` / ``-5b``.
"""

from __future__ import annotations

import functools
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from videosys.core import Conditioning, JointBlock, JointBranch, JointSelfAttention, STBackbone, VideoGrid
from videosys.core.layers import (
    FeedForward,
    FinalLayer,
    GridRotaryEmbedding,
    PatchEmbed2D,
    TimestepEmbedder,
    sincos_1d,
    sincos_2d,
)

from ..loading import DIFFUSERS_BLOCK_RULES, rename_keys
from .common import batch_timesteps, check_text_features, require_config

__all__ = ["CogVideoXBlock", "CogVideoXTransformer", "cropped_grid"]


class CogVideoXBlock(JointBlock):
    """CogVideoX's block: joint attention, then a feed-forward over both streams, each adaLN-zero modulated.

    One modulation linear per branch gives both streams' shift/scale/gate (diffusers' ``CogVideoXLayerNormZero``,
    whose single LayerNorm normalises both streams); the feed-forward over the concatenated tokens is token-wise,
    so it runs on each stream.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        time_embed_dim: int,
        *,
        attention_bias: bool,
        norm_eps: float,
        norm_elementwise_affine: bool,
        rope: GridRotaryEmbedding | None,
    ) -> None:
        super().__init__()
        self.dim = dim

        def norm() -> nn.LayerNorm:
            return nn.LayerNorm(dim, eps=norm_eps, elementwise_affine=norm_elementwise_affine)

        attention = JointSelfAttention(dim, num_heads, qkv_bias=attention_bias, qk_norm="layer", rope=rope)
        self.attn = JointBranch(attention, norm())
        self.mlp = JointBranch(FeedForward(dim, 4 * dim), norm())
        self.attn_modulation = nn.Linear(time_embed_dim, 6 * dim)
        self.mlp_modulation = nn.Linear(time_embed_dim, 6 * dim)

    @staticmethod
    def _modulation(linear: nn.Linear, temb: torch.Tensor) -> dict[str, torch.Tensor]:
        """Video ``(B, 1, 1, C)`` and text ``(B, 1, C)`` shift/scale/gate, in diffusers' chunk order."""
        params = linear(F.silu(temb)).unflatten(-1, (6, -1))
        video = [params[:, i, None, None] for i in range(3)]
        text = [params[:, i, None] for i in range(3, 6)]
        names = ("shift", "scale", "gate")
        return dict(zip(names, video)) | {f"context_{n}": p for n, p in zip(names, text)}

    def forward(self, x: torch.Tensor, cond: Conditioning) -> tuple[torch.Tensor, torch.Tensor]:  # type: ignore[override]
        context = cond.context
        h, hc = self.attn(x, context, **self._modulation(self.attn_modulation, cond.modulation), grid=cond.grid)
        x, context = x + h, context + hc
        h, hc = self.mlp(x, context, **self._modulation(self.mlp_modulation, cond.modulation))
        return x + h, context + hc


def _linspace_step(first: int, end: int, n: int) -> float:
    """The spacing of diffusers' ``linspace(first, end * (n - 1) / n, n)`` (any value for one position)."""
    return (end * (n - 1) / n - first) / (n - 1) if n > 1 else 1.0


def cropped_grid(frames: int, height: int, width: int, base_height: int, base_width: int) -> VideoGrid:
    """The token grid placed in the trained ``base_height x base_width`` grid as CogVideoX's RoPE places it.

    diffusers' pipeline resizes the video's grid to fit the base one (keeping its aspect ratio), centres it
    (``get_resize_crop_region_for_grid``) and spreads the positions over that region with
    ``linspace(top, bottom * (n - 1) / n, n)``; frames count 0, 1, ...
    """
    if height / width > base_height / base_width:
        resized_h, resized_w = base_height, round(base_height / height * width)
    else:
        resized_h, resized_w = round(base_width / width * height), base_width
    top, left = round((base_height - resized_h) / 2), round((base_width - resized_w) / 2)
    return VideoGrid(
        frames,
        height,
        width,
        origin=(0.0, float(top), float(left)),
        spacing=(1.0, _linspace_step(top, top + resized_h, height), _linspace_step(left, left + resized_w, width)),
    )


@functools.lru_cache(maxsize=8)
def _sincos_3d(
    frames: int, height: int, width: int, dim: int, spatial_scale: float, temporal_scale: float, device: torch.device
) -> torch.Tensor:
    """``(T, H*W, dim)`` float32 positions: a quarter of the channels for the frame, the rest 2-D (diffusers')."""
    temporal = sincos_1d(torch.arange(frames) / temporal_scale, dim // 4)
    spatial = sincos_2d(height, width, dim - dim // 4, interpolation_scale=spatial_scale)
    table = torch.cat([temporal[:, None].expand(-1, height * width, -1), spatial[None].expand(frames, -1, -1)], -1)
    return table.float().to(device)


class CogVideoXTransformer(STBackbone):
    """CogVideoX's denoiser: latents ``(B, C, T, H, W)``, timesteps and T5 features ``(B, L, 4096)`` to the
    prediction ``(B, C, T, H, W)`` (v-prediction for the published schedulers).

    The text tokens are projected and travel as the joint stream (``cond.context``), updated by every block.
    ``rope=True`` (5b) rotates video queries and keys with a 3-D RoPE (head dim split 1/4 frame, 3/8 row,
    3/8 column, adjacent pairs); otherwise (2b) 3-D sin-cos positions are added to the video tokens.
    """

    def __init__(
        self,
        *,
        num_layers: int = 30,
        num_heads: int = 30,
        head_dim: int = 64,
        in_channels: int = 16,
        out_channels: int = 16,
        time_embed_dim: int = 512,
        text_embed_dim: int = 4096,
        patch_size: int = 2,
        sample_height: int = 60,
        sample_width: int = 90,
        attention_bias: bool = True,
        patch_bias: bool = True,
        norm_eps: float = 1e-5,
        norm_elementwise_affine: bool = True,
        flip_sin_to_cos: bool = True,
        freq_shift: float = 0.0,
        spatial_interpolation_scale: float = 1.875,
        temporal_interpolation_scale: float = 1.0,
        rope: bool = False,
    ) -> None:
        super().__init__()
        dim = num_heads * head_dim
        if rope and head_dim % 16:
            raise ValueError(
                f"CogVideoX's 3-D RoPE gives frames 1/4 of the head dim and rows and columns 3/8 each, every part in "
                f"channel pairs, so the head dim must be a multiple of 16; got head_dim {head_dim}"
            )
        if not rope and dim % 16:
            raise ValueError(f"CogVideoX's 3-D sin-cos positions need a width divisible by 16, got {dim}")
        self.dim, self.in_channels, self.out_channels, self.patch_size = dim, in_channels, out_channels, patch_size
        self.sample_height, self.sample_width = sample_height, sample_width
        self.spatial_interpolation_scale = spatial_interpolation_scale
        self.temporal_interpolation_scale = temporal_interpolation_scale
        self.rope = rope
        self.patch_embed = PatchEmbed2D(patch_size, in_channels, dim, bias=patch_bias)
        self.text_proj = nn.Linear(text_embed_dim, dim)
        # diffusers' Timesteps(dim) + TimestepEmbedding(dim, time_embed_dim): sinusoids as wide as the tokens.
        self.time_embedding = TimestepEmbedder(
            time_embed_dim, frequency_dim=dim, flip_sin_to_cos=flip_sin_to_cos, downscale_freq_shift=freq_shift
        )
        self.blocks = nn.ModuleList(
            CogVideoXBlock(
                dim,
                num_heads,
                time_embed_dim,
                attention_bias=attention_bias,
                norm_eps=norm_eps,
                norm_elementwise_affine=norm_elementwise_affine,
                rope=self._rope(head_dim) if rope else None,
            )
            for _ in range(num_layers)
        )
        self.norm_final = nn.LayerNorm(dim, eps=norm_eps, elementwise_affine=norm_elementwise_affine)
        self.final = FinalLayer(
            dim,
            patch_size * patch_size * out_channels,
            "linear",
            norm_eps,
            cond_dim=time_embed_dim,
            elementwise_affine=norm_elementwise_affine,
        )

    @staticmethod
    def _rope(head_dim: int) -> GridRotaryEmbedding:
        split = (head_dim // 4, head_dim // 8 * 3, head_dim // 8 * 3)
        return GridRotaryEmbedding(head_dim, "thw", split, interleaved=True)

    def embed(
        self, latents: torch.Tensor, timestep: torch.Tensor | float, encoder_hidden_states: torch.Tensor
    ) -> tuple[torch.Tensor, Conditioning]:
        """Patchify ``latents: (B, C, T, H, W)``, embed the timestep, project the T5 features ``(B, L, Ct)``."""
        x = self.patch_embed(latents)
        b, _, frames, height, width = latents.shape
        check_text_features(encoder_hidden_states, b, self.text_proj.in_features)
        gh, gw = height // self.patch_size, width // self.patch_size
        if self.rope:
            p = self.patch_size
            grid = cropped_grid(frames, gh, gw, self.sample_height // p, self.sample_width // p)
        else:
            grid = VideoGrid(frames, gh, gw)
            table = _sincos_3d(
                frames,
                gh,
                gw,
                self.dim,
                self.spatial_interpolation_scale,
                self.temporal_interpolation_scale,
                x.device,
            )
            x = x + table.to(x.dtype)
        temb = self.time_embedding(batch_timesteps(timestep, b, x.device), dtype=x.dtype)
        return x, Conditioning(modulation=temb, context=self.text_proj(encoder_hidden_states), grid=grid)

    def head(self, x: torch.Tensor, cond: Conditioning) -> torch.Tensor:
        """Final norm (token-wise, so the video tokens' own; the text stream ends here) and the adaLN output layer.

        Each token's outputs are ordered ``(C, p, p)``, channels slowest, as diffusers' ``proj_out`` emits them.
        """
        x = self.final(self.norm_final(x), cond.modulation)
        b, t = x.shape[:2]
        p, grid = self.patch_size, cond.grid
        x = x.reshape(b, t, grid.height, grid.width, self.out_channels, p, p)
        return x.permute(0, 4, 1, 2, 5, 3, 6).reshape(b, self.out_channels, t, grid.height * p, grid.width * p)

    @classmethod
    def from_diffusers_config(cls, config: dict[str, Any]) -> CogVideoXTransformer:
        """The architecture a diffusers ``CogVideoXTransformer3DModel`` ``config.json`` describes (1.0: 2b, 5b)."""
        require_config(
            config,
            "CogVideoXTransformer3DModel",
            patch_size_t=None,
            ofs_embed_dim=None,
            use_learned_positional_embeddings=False,
            activation_fn="gelu-approximate",
            timestep_activation_fn="silu",
        )
        in_channels = config.get("in_channels", 16)
        return cls(
            num_layers=config.get("num_layers", 30),
            num_heads=config.get("num_attention_heads", 30),
            head_dim=config.get("attention_head_dim", 64),
            in_channels=in_channels,
            out_channels=config.get("out_channels") or in_channels,
            time_embed_dim=config.get("time_embed_dim", 512),
            text_embed_dim=config.get("text_embed_dim", 4096),
            patch_size=config.get("patch_size", 2),
            sample_height=config.get("sample_height", 60),
            sample_width=config.get("sample_width", 90),
            attention_bias=config.get("attention_bias", True),
            patch_bias=config.get("patch_bias", True),
            norm_eps=config.get("norm_eps", 1e-5),
            norm_elementwise_affine=config.get("norm_elementwise_affine", True),
            flip_sin_to_cos=config.get("flip_sin_to_cos", True),
            freq_shift=config.get("freq_shift", 0),
            spatial_interpolation_scale=config.get("spatial_interpolation_scale", 1.875),
            temporal_interpolation_scale=config.get("temporal_interpolation_scale", 1.0),
            rope=config.get("use_rotary_positional_embeddings", False),
        )

    @staticmethod
    def convert_diffusers_state_dict(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """diffusers' CogVideoX key names to ours; keys it does not know pass through unchanged."""
        return rename_keys(state_dict, _COGVIDEOX_RULES)


_COGVIDEOX_RULES = [
    (r"^patch_embed\.text_proj\.", "text_proj."),
    (r"^transformer_blocks\.(\d+)\.", r"blocks.\1."),
    (r"\.norm1\.linear\.", ".attn_modulation."),
    (r"\.norm1\.norm\.", ".attn.norm."),
    (r"\.norm2\.linear\.", ".mlp_modulation."),
    (r"\.norm2\.norm\.", ".mlp.norm."),
    (r"\.attn1\.norm_([qk])\.", r".attn.inner.norm_\1."),
    (r"^norm_out\.linear\.", "final.adaLN_modulation.1."),
    (r"^norm_out\.norm\.", "final.norm."),
    (r"^proj_out\.", "final.linear."),
    *DIFFUSERS_BLOCK_RULES,
]
