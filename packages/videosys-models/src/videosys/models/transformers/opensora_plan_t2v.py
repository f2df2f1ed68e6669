"""Open-Sora-Plan v1.2's ``OpenSoraT2V`` on the VideoSys core: adaLN-single blocks of full 3-D attention.

Numerics follow the original (PKU-YuanGroup/Open-Sora-Plan, tag v1.2.0,
``opensora/models/diffusion/opensora/modeling_opensora.py``, ``modules.py``, ``rope.py``): each frame's
``p x p`` patches become tokens with no absolute positions; every block attends over all ``T * S`` tokens
(``FULL``), rotating queries and keys by their ``(t, h, w)`` place (RoPE3D: the head dim in thirds, halves
pairing, positions divided by the per-axis interpolation scales); then PixArt-style cross-attention to the
projected mT5 tokens and the MLP, modulated by adaLN-single. A video mask over the latents (True = real)
becomes a key mask over the tokens (a patch counts when any of its latent pixels does).
:meth:`OpenSoraPlanT2V.from_diffusers_config` and :meth:`OpenSoraPlanT2V.convert_diffusers_state_dict` read the
``transformer/`` folders of ``LanguageBind/Open-Sora-Plan-v1.2.0`` (diffusers ``ModelMixin`` layout).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from videosys.core import AdaLNBlock, AttentionAxis, Conditioning, STBackbone, VideoGrid
from videosys.core.layers import (
    CaptionProjection,
    FinalLayer,
    GridRotaryEmbedding,
    PatchEmbed2D,
    TimestepEmbedder,
    unpatchify,
)

from ..loading import DIFFUSERS_BLOCK_RULES, rename_keys
from .common import (
    ADALN_SINGLE_RULES,
    adaln_single_t2v_args,
    additive_key_mask,
    batch_timesteps,
    check_text_features,
    require_config,
    text_key_mask,
)

__all__ = ["OpenSoraPlanConditioning", "OpenSoraPlanT2V", "default_interpolation_scales"]


@dataclass
class OpenSoraPlanConditioning(Conditioning):
    """``OpenSoraT2V``'s conditioning: ``modulation`` is adaLN-single's ``(B, 6C)``."""

    embedded_timestep: torch.Tensor | None = None
    """The timestep embedding ``(B, C)``: the output layer's adaLN input."""


def default_interpolation_scales(sample_size: tuple[int, int], sample_size_t: int) -> tuple[float, float, float]:
    """RoPE3D's ``(t, h, w)`` interpolation scales when a config leaves them null, as the original derives them.

    ``t``: ``(frames - 1) // 16 + 1`` for an odd latent frame count, ``frames / 16`` otherwise; ``h``, ``w``:
    the latent size over 30 x 40 (the 240p base the scales count from).
    """
    frames = sample_size_t
    t = (frames - 1) // 16 + 1 if frames % 2 == 1 else frames / 16
    return float(t), sample_size[0] / 30, sample_size[1] / 40


class OpenSoraPlanT2V(STBackbone):
    """Open-Sora-Plan v1.2's denoiser: ``(B, C, T, H, W)`` latents, timesteps and mT5 features to ``out_channels``.

    ``interpolation_scale`` is RoPE3D's ``(t, h, w)`` (the published 480p folders use ``(1, 1, 1)``, 720p
    ``(1, 1.5, 2)``). ``dim = num_heads * head_dim``; the head dim must split into three even parts.
    """

    def __init__(
        self,
        *,
        num_layers: int = 32,
        num_heads: int = 24,
        head_dim: int = 96,
        in_channels: int = 4,
        out_channels: int = 8,
        patch_size: int = 2,
        caption_channels: int = 4096,
        interpolation_scale: tuple[float, float, float] = (1.0, 1.0, 1.0),
        attention_bias: bool = True,
        norm_eps: float = 1e-6,
    ) -> None:
        super().__init__()
        if head_dim % 6:
            raise ValueError(
                f"OpenSoraT2V's RoPE3D rotates the head dim in three even parts: head_dim must divide by 6, "
                f"got {head_dim}"
            )
        dim = num_heads * head_dim
        self.dim, self.in_channels, self.out_channels, self.patch_size = dim, in_channels, out_channels, patch_size
        self.patch_embed = PatchEmbed2D(patch_size, in_channels, dim)
        self.t_embedder = TimestepEmbedder(dim)
        self.t_block = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))
        self.caption_projection = CaptionProjection(caption_channels, dim)
        self.rope = GridRotaryEmbedding(head_dim, interpolation_scale=interpolation_scale)
        self.blocks = nn.ModuleList(
            AdaLNBlock(
                dim,
                num_heads,
                AttentionAxis.FULL,
                cross_attention=True,
                context_dim=dim,
                rope=self.rope,
                qkv_bias=attention_bias,
                norm_eps=norm_eps,
            )
            for _ in range(num_layers)
        )
        self.final = FinalLayer(dim, patch_size * patch_size * out_channels)

    def embed(
        self,
        latents: torch.Tensor,
        timestep: torch.Tensor | float,
        encoder_hidden_states: torch.Tensor,
        encoder_attention_mask: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, OpenSoraPlanConditioning]:
        """Patchify ``latents``, embed the timestep, project the caption, pool the video mask to the tokens.

        ``encoder_hidden_states``: ``(B, L, Cc)`` (or the original's ``(B, 1, L, Cc)``);
        ``encoder_attention_mask``: ``(B, L)`` or ``(B, 1, L)``, nonzero for real tokens; ``attention_mask``:
        ``(B, T, H, W)`` over the latents, nonzero where they are real (None: all of them).
        """
        x = self.patch_embed(latents)  # checks (B, C, T, H, W) and the patch size
        b, _, frames, height, width = latents.shape
        grid = VideoGrid(frames, height // self.patch_size, width // self.patch_size)
        t_emb = self.t_embedder(batch_timesteps(timestep, b, x.device), dtype=x.dtype)
        text = encoder_hidden_states
        if text.dim() == 4 and text.shape[1] == 1:
            text = text.squeeze(1)
        check_text_features(text, b, self.caption_projection.linear_1.in_features)
        cond = OpenSoraPlanConditioning(
            modulation=self.t_block(t_emb),
            context=self.caption_projection(text.to(x.dtype)),
            context_mask=text_key_mask(encoder_attention_mask, b, text.shape[1], x.device),
            grid=grid,
            attention_mask=self._video_mask(attention_mask, latents.shape, grid, x.device),
            embedded_timestep=t_emb,
        )
        return x, cond

    def head(self, x: torch.Tensor, cond: OpenSoraPlanConditioning) -> torch.Tensor:
        x = self.final(x, cond.embedded_timestep)
        p = self.patch_size
        return unpatchify(x, self.out_channels, (1, p, p), (cond.grid.height, cond.grid.width))

    def _video_mask(
        self, mask: torch.Tensor | None, shape: torch.Size, grid: VideoGrid, device: torch.device
    ) -> torch.Tensor | None:
        """``(B, T, H, W)`` over the latents to a boolean ``(B, T, S)`` key mask: a patch is kept if any pixel is
        (a sample hiding every patch attends to all, as the original's additive bias does)."""
        if mask is None:
            return None
        b, _, frames, height, width = shape
        if tuple(mask.shape) != (b, frames, height, width):
            raise ValueError(
                f"attention_mask must cover the latents as (B, T, H, W) = {(b, frames, height, width)}, "
                f"got {tuple(mask.shape)}"
            )
        kept = F.max_pool2d(mask.to(device).bool().float().flatten(0, 1), self.patch_size) > 0
        mask = additive_key_mask(kept.reshape(b, frames, grid.tokens))
        return None if mask.all() else mask  # as the original: a mask that hides nothing is dropped

    @classmethod
    def from_diffusers_config(cls, config: dict[str, Any]) -> OpenSoraPlanT2V:
        """Build the architecture an ``OpenSoraT2V`` ``config.json`` (Open-Sora-Plan v1.2.0) describes."""
        require_config(
            config,
            "OpenSoraT2V",
            norm_type="ada_norm_single",
            activation_fn="gelu-approximate",
            norm_elementwise_affine=False,
            use_rope=True,
            downsampler=None,
            patch_size_t=1,
            only_cross_attention=False,
            double_self_attention=False,
            attention_type="default",
        )
        args = adaln_single_t2v_args(config, "OpenSoraT2V")
        if config.get("cross_attention_dim") is None:
            raise ValueError("OpenSoraT2V config has no cross_attention_dim: the release's blocks cross-attend to text")
        scales = [config.get(f"interpolation_scale_{axis}") for axis in "thw"]
        if None in scales:
            size, frames = config.get("sample_size"), config.get("sample_size_t")
            if size is None or frames is None:
                raise ValueError(
                    "OpenSoraT2V config leaves an interpolation_scale_{t,h,w} null and has no sample_size / "
                    "sample_size_t to derive it from"
                )
            size = tuple(size) if isinstance(size, (list, tuple)) else (size, size)
            defaults = default_interpolation_scales(size, frames)
            scales = [default if scale is None else scale for scale, default in zip(scales, defaults)]
        return cls(**args, interpolation_scale=tuple(scales))

    @staticmethod
    def convert_diffusers_state_dict(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``OpenSoraT2V``'s key names to ours; keys it does not know pass through (and are then reported)."""
        return rename_keys(state_dict, _OPENSORA_T2V_RULES)


_OPENSORA_T2V_RULES = [
    *ADALN_SINGLE_RULES,
    (r"^transformer_blocks\.", "blocks."),
    *DIFFUSERS_BLOCK_RULES,
]
