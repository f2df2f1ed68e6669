"""STDiT3, the Open-Sora 1.2 denoiser, on the VideoSys core: spatial block ``i`` then temporal block ``i``.

Numerics follow the original (hpcaitech/Open-Sora, tag v1.2.0, ``opensora/models/stdit/stdit3.py``):
adaLN-single blocks with RMS qk-norm, temporal RoPE (rotary-embedding-torch's interleaved pairs), cross-
attention to T5 tokens, fps added to the timestep embedding, 2-D sin-cos positions scaled to the
resolution. Frames given as conditioning (``x_mask`` False) are modulated with the embedding of timestep
0: the adaLN input is laid out like the tokens (:func:`videosys.core.token_field`), so sequence
parallelism shards it with the frames. Weights load unchanged from the published
``hpcai-tech/OpenSora-STDiT-v3`` folder (``config.json`` + ``model.safetensors``); the fused ``qkv`` and
``kv_linear`` projections are kept as published.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from videosys.core import (
    AdaLNBlock,
    AttentionAxis,
    Conditioning,
    CrossAttentionBase,
    STBackbone,
    VideoAttention,
    VideoGrid,
    token_field,
)
from videosys.core.layers import (
    CaptionProjection,
    FinalLayer,
    PatchEmbed3D,
    RotaryEmbedding,
    TimestepEmbedder,
    make_norm,
    modulate,
    unpatchify,
)

from ..loading import CheckpointError, rename_keys
from .common import add_sincos_2d, batch_timesteps, caption_mask, require_config

__all__ = ["STDiT3", "STDiT3Conditioning"]


class FusedSelfAttention(VideoAttention):
    """Self-attention with one fused ``qkv`` projection and ``proj`` out (timm's layout, as Open-Sora publishes it)."""

    def __init__(self, dim: int, num_heads: int, axis: AttentionAxis, *, qk_norm: bool, rope: RotaryEmbedding | None):
        super().__init__(axis, num_heads)
        self.dim, self.head_dim = dim, dim // num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.q_norm = make_norm("rms", self.head_dim) if qk_norm else nn.Identity()
        self.k_norm = make_norm("rms", self.head_dim) if qk_norm else nn.Identity()
        self.proj = nn.Linear(dim, dim)
        self.rope = rope

    def project(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        q, k, v = self.qkv(x).unflatten(-1, (3, self.num_heads, self.head_dim)).unbind(dim=-3)
        return self.q_norm(q), self.k_norm(k), v

    def output(self, o: torch.Tensor) -> torch.Tensor:
        return self.proj(o.flatten(-2))


class FusedCrossAttention(CrossAttentionBase):
    """Cross-attention with ``q_linear``, one fused ``kv_linear`` and ``proj`` (PixArt's layout, as published)."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__(dim, num_heads)
        self.q_linear = nn.Linear(dim, dim)
        self.kv_linear = nn.Linear(dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)

    def project(self, x: torch.Tensor, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        k, v = self.kv_linear(context).unflatten(-1, (2, self.num_heads, self.head_dim)).unbind(dim=-3)
        return self.q_linear(x).unflatten(-1, (self.num_heads, self.head_dim)), k, v

    def output(self, o: torch.Tensor) -> torch.Tensor:
        return self.proj(o)


class CaptionEmbedder(nn.Module):
    """T5 features to the model width, plus the learned null caption ``y_embedding`` for guidance."""

    def __init__(self, caption_channels: int, dim: int, max_tokens: int) -> None:
        super().__init__()
        self.y_proj = CaptionProjection(caption_channels, dim)
        self.register_buffer("y_embedding", torch.randn(max_tokens, caption_channels) / caption_channels**0.5)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return self.y_proj(y)


@dataclass
class STDiT3Conditioning(Conditioning):
    """STDiT3's conditioning: ``modulation`` is ``(B, 6C)``, or ``(B, T, 1, 6C)`` when some frames are at t0."""

    t: torch.Tensor | None = None
    """Embedded timestep plus fps, ``(B, C)``: the output layer's adaLN input."""
    t0: torch.Tensor | None = None
    """The same for timestep 0, ``(B, C)``, when some frames are given as conditioning."""
    x_mask: torch.Tensor | None = token_field()
    """Boolean ``(B, T, 1, 1)``, False for the frames given as conditioning (modulated with ``t0``)."""
    size: tuple[int, int, int] = (1, 1, 1)
    """Latent size ``(T, H, W)`` before padding; the output is cropped back to it."""


class STDiT3(STBackbone):
    """Open-Sora 1.2's denoiser: ``(B, C, T, H, W)`` latents, timesteps, T5 features, fps and size to velocity.

    ``blocks`` alternates spatial block ``i`` and temporal block ``i``, each with RMS qk-norm and cross-attention;
    temporal blocks also rotate queries and keys by frame (RoPE). With ``pred_sigma`` the output has
    ``2 * in_channels`` channels, as published.
    """

    resting_axis = AttentionAxis.TEMPORAL
    """DSP shards frames by default: per step both axes move 2M/N, but under Open-Sora's PAB defaults temporal
    attention is reused twice as often as spatial, and only attention over the resting axis pays for switches
    (benchmarks/stdit3_dsp.py: 13% fewer bytes per 30-step generation)."""

    def __init__(
        self,
        *,
        depth: int = 28,
        hidden_size: int = 1152,
        num_heads: int = 16,
        patch_size: tuple[int, int, int] = (1, 2, 2),
        in_channels: int = 4,
        pred_sigma: bool = True,
        mlp_ratio: float = 4.0,
        caption_channels: int = 4096,
        model_max_length: int = 300,
        input_sq_size: int = 512,
        qk_norm: bool = True,
    ) -> None:
        super().__init__()
        if hidden_size % num_heads or (hidden_size // num_heads) % 2 or hidden_size % 4:
            raise ValueError(
                f"STDiT3 needs hidden_size ({hidden_size}) divisible by 4 and into {num_heads} heads of even width"
            )
        self.dim = hidden_size
        self.in_channels = in_channels
        self.out_channels = 2 * in_channels if pred_sigma else in_channels
        self.patch_size = tuple(patch_size)
        self.input_sq_size = input_sq_size
        self.x_embedder = PatchEmbed3D(self.patch_size, in_channels, hidden_size)
        self.t_embedder = TimestepEmbedder(hidden_size)
        self.fps_embedder = TimestepEmbedder(hidden_size)
        self.t_block = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, 6 * hidden_size))
        self.y_embedder = CaptionEmbedder(caption_channels, hidden_size, model_max_length)
        self.rope = RotaryEmbedding(hidden_size // num_heads)
        blocks = []
        for _ in range(depth):
            for axis in (AttentionAxis.SPATIAL, AttentionAxis.TEMPORAL):
                rope = self.rope if axis is AttentionAxis.TEMPORAL else None
                attention = FusedSelfAttention(hidden_size, num_heads, axis, qk_norm=qk_norm, rope=rope)
                cross = FusedCrossAttention(hidden_size, num_heads)
                blocks.append(
                    AdaLNBlock(hidden_size, num_heads, axis, mlp_ratio=mlp_ratio, attention=attention, cross=cross)
                )
        self.blocks = nn.ModuleList(blocks)
        self.final_layer = FinalLayer(hidden_size, math.prod(self.patch_size) * self.out_channels)

    @property
    def null_caption(self) -> torch.Tensor:
        """The learned caption ``(L, caption_channels)`` of the unconditional branch of guidance."""
        return self.y_embedder.y_embedding

    def embed(
        self,
        latents: torch.Tensor,
        timestep: torch.Tensor | float,
        y: torch.Tensor,
        mask: torch.Tensor | None = None,
        x_mask: torch.Tensor | None = None,
        fps: torch.Tensor | float = 24.0,
        height: torch.Tensor | float | None = None,
        width: torch.Tensor | float | None = None,
    ) -> tuple[torch.Tensor, STDiT3Conditioning]:
        """Patchify ``latents``, embed timestep + fps, project the caption.

        ``y``: T5 features ``(B, L, Cc)`` (or the original's ``(B, 1, L, Cc)``); ``mask``: ``(B, L)`` (``(1, L)`` for
        every sample, or the original's ``(B, 1, L)``), nonzero for real tokens; ``x_mask``: boolean ``(B, T)``,
        False for frames given as conditioning (modulated with timestep 0); ``height``/``width``: the video's size
        in pixels, which scales the positions.
        """
        if height is None or width is None:
            raise ValueError("STDiT3 needs the video's height and width in pixels (they scale the positions)")
        b, _, *size = latents.shape
        pads = [(-n) % p for n, p in zip(size, self.patch_size)]
        x = self.x_embedder(F.pad(latents, (0, pads[2], 0, pads[1], 0, pads[0])))
        grid = VideoGrid(*((n + p) // q for n, p, q in zip(size, pads, self.patch_size)))  # after padding
        pixels = float(torch.as_tensor(height).flatten()[0]) * float(torch.as_tensor(width).flatten()[0])
        x = add_sincos_2d(x, (grid.height, grid.width), round(grid.tokens**0.5), pixels**0.5 / self.input_sq_size)

        fps_emb = self.fps_embedder(batch_timesteps(fps, b, x.device), dtype=x.dtype)
        t = self.t_embedder(batch_timesteps(timestep, b, x.device), dtype=x.dtype) + fps_emb
        modulation, t0 = self.t_block(t), None
        if x_mask is not None:
            if x_mask.shape != (b, grid[0]):
                raise ValueError(f"x_mask must be (B, T) = ({b}, {grid[0]}), got shape {tuple(x_mask.shape)}")
            t0 = self.t_embedder(torch.zeros(b, device=x.device), dtype=x.dtype) + fps_emb
            x_mask = x_mask.to(device=x.device, dtype=torch.bool)[:, :, None, None]
            modulation = torch.where(x_mask, modulation[:, None, None], self.t_block(t0)[:, None, None])

        if y.dim() == 4:
            y = y.squeeze(1)
        if y.dim() != 3 or y.shape[0] != b:
            raise ValueError(f"y must be (B={b}, L, channels) T5 features, got shape {tuple(y.shape)}")
        if mask is not None:
            mask = caption_mask(mask, b, y.shape[1], x.device, name="mask", shared=True)
        cond = STDiT3Conditioning(
            modulation=modulation,
            context=self.y_embedder(y.to(x.dtype)),
            context_mask=mask,
            t=t,
            t0=t0,
            x_mask=x_mask,
            grid=grid,
            size=tuple(size),
        )
        return x, cond

    def head(self, x: torch.Tensor, cond: STDiT3Conditioning) -> torch.Tensor:
        final = self.final_layer
        h = modulate(final.norm(x), *final.shift_scale(cond.t))
        if cond.x_mask is not None:
            # As the original: frames at t0 are modulated again, from the t-modulated features.
            h = torch.where(cond.x_mask, h, modulate(final.norm(h), *final.shift_scale(cond.t0)))
        x = unpatchify(final.linear(h), self.out_channels, self.patch_size, (cond.grid.height, cond.grid.width))
        t, h, w = cond.size
        return x[:, :, :t, :h, :w].float()

    @classmethod
    def from_transformers_config(cls, config: dict[str, Any]) -> STDiT3:
        """Build the architecture an Open-Sora ``STDiT3Config`` ``config.json`` describes."""
        require_config(config, "STDiT3", skip_y_embedder=False)
        return cls(
            depth=config.get("depth", 28),
            hidden_size=config.get("hidden_size", 1152),
            num_heads=config.get("num_heads", 16),
            patch_size=tuple(config.get("patch_size", (1, 2, 2))),
            in_channels=config.get("in_channels", 4),
            pred_sigma=config.get("pred_sigma", True),
            mlp_ratio=config.get("mlp_ratio", 4.0),
            caption_channels=config.get("caption_channels", 4096),
            model_max_length=config.get("model_max_length", 300),
            input_sq_size=config.get("input_sq_size", 512),
            qk_norm=config.get("qk_norm", True),
        )

    def convert_transformers_state_dict(self, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The published key names to ours; the stored RoPE frequencies must be the fixed ones we compute."""
        state_dict = dict(state_dict)
        freqs = state_dict.pop("rope.freqs", None)
        if freqs is not None and (
            freqs.shape != self.rope.inv_freq.shape or not torch.allclose(freqs.float(), self.rope.inv_freq)
        ):
            raise CheckpointError(
                f"checkpoint key rope.freqs {tuple(freqs.shape)} differs from the RoPE frequencies "
                f"theta**(-2i/{self.rope.head_dim}) that STDiT3 uses"
            )
        return rename_keys(state_dict, _STDIT3_RULES)


def _block(kind: int):
    return lambda m: f"blocks.{2 * int(m.group(1)) + kind}."


_STDIT3_RULES = [
    (r"^spatial_blocks\.(\d+)\.", _block(0)),
    (r"^temporal_blocks\.(\d+)\.", _block(1)),
    (r"\.attn\.", ".attn.inner."),
    (r"\.cross_attn\.", ".cross.inner."),
    (r"^(blocks\.\d+)\.mlp\.", r"\1.mlp.inner."),
    (r"^(t|fps)_embedder\.mlp\.0\.", r"\1_embedder.linear_1."),
    (r"^(t|fps)_embedder\.mlp\.2\.", r"\1_embedder.linear_2."),
    (r"^y_embedder\.y_proj\.fc([12])\.", r"y_embedder.y_proj.linear_\1."),
]
