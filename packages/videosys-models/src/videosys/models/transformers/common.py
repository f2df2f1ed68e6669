"""Pieces the diffusers-layout DiT backbones (Latte, DiT) share beyond the core layers."""

from __future__ import annotations

import functools
from typing import Any

import torch

from videosys.core import STBackbone
from videosys.core.layers import PatchEmbed2D, sincos_2d, unpatchify

__all__ = [
    "ADALN_SINGLE_RULES",
    "PatchedBackbone",
    "add_sincos_2d",
    "additive_key_mask",
    "adaln_single_t2v_args",
    "batch_timesteps",
    "caption_mask",
    "check_text_features",
    "require_config",
    "text_key_mask",
]

ADALN_SINGLE_RULES = [
    (r"^pos_embed\.proj\.", "patch_embed.proj."),
    (r"^adaln_single\.emb\.timestep_embedder\.", "t_embedder."),
    (r"^adaln_single\.linear\.", "t_block.1."),
    (r"^scale_shift_table$", "final.scale_shift_table"),
    (r"^proj_out\.", "final.linear."),
]
"""The names around the blocks of diffusers-layout adaLN-single text-to-video backbones (Latte, Open-Sora-Plan's
``OpenSoraT2V``): patch embedder, timestep embedder and adaLN-single linear, output layer, to ours."""


@functools.lru_cache(maxsize=16)
def _sincos_table(
    height: int, width: int, dim: int, base_size: int, interpolation_scale: float, device: torch.device
) -> torch.Tensor:
    return sincos_2d(height, width, dim, base_size, interpolation_scale).float().to(device)


def add_sincos_2d(x: torch.Tensor, grid: tuple[int, int], base_size: int, interpolation_scale: float) -> torch.Tensor:
    """Add the 2-D sin-cos position table of a ``grid`` of patches to every frame of ``(B, T, S, C)`` tokens.

    The sum is taken in float32 and cast back, as diffusers' ``PatchEmbed`` does, so half-precision
    models see the same rounding as the reference.
    """
    table = _sincos_table(grid[0], grid[1], x.shape[-1], base_size, float(interpolation_scale), x.device)
    return (x.float() + table).to(x.dtype)


def check_text_features(features: torch.Tensor, batch: int, channels: int) -> None:
    """Raise naming the shape when a backbone's text features are not ``(batch, L, channels)``."""
    if features.dim() != 3 or features.shape[0] != batch or features.shape[2] != channels:
        raise ValueError(
            f"encoder_hidden_states must be (B={batch}, L, {channels}) text features, got shape {tuple(features.shape)}"
        )


def require_config(config: dict, model: str, **expected: object) -> None:
    """Raise naming the field when a checkpoint's config asks for a variant this backbone does not implement."""
    for key, value in expected.items():
        if key in config and config[key] != value:
            raise ValueError(
                f"{model} config has {key}={config[key]!r}; VideoSys implements {key}={value!r} "
                "(the published checkpoints' value)"
            )


def adaln_single_t2v_args(config: dict, model: str) -> dict[str, Any]:
    """The constructor arguments a diffusers-layout adaLN-single text-to-video ``config.json`` gives alike (Latte,
    ``OpenSoraT2V``): depth, heads, head dim, channels, patch, caption width, attention bias, norm eps."""
    heads, head_dim = config.get("num_attention_heads", 16), config.get("attention_head_dim", 88)
    cross_dim = config.get("cross_attention_dim")
    if cross_dim is not None and cross_dim != heads * head_dim:
        raise ValueError(
            f"{model} config has cross_attention_dim={cross_dim}; the caption projection feeds the width "
            f"{heads * head_dim}, so it must equal num_attention_heads * attention_head_dim"
        )
    if config.get("caption_channels") is None:
        raise ValueError(f"{model} config has no caption_channels (the text encoder width)")
    in_channels = config["in_channels"]
    return {
        "num_layers": config.get("num_layers", 1),
        "num_heads": heads,
        "head_dim": head_dim,
        "in_channels": in_channels,
        "out_channels": config.get("out_channels") or in_channels,
        "patch_size": config["patch_size"],
        "caption_channels": config["caption_channels"],
        "attention_bias": config.get("attention_bias", False),
        "norm_eps": config.get("norm_eps", 1e-5),
    }


def batch_timesteps(timestep: torch.Tensor | float, batch: int, device: torch.device) -> torch.Tensor:
    """One timestep per sample, ``(batch,)``, from a number, a 0-d tensor or a ``(batch,)`` tensor."""
    t = torch.as_tensor(timestep, device=device)
    if t.dim() == 0:
        return t.expand(batch)
    if t.dim() != 1 or t.shape[0] not in (1, batch):
        raise ValueError(f"timestep must be a number or shaped ({batch},), got shape {tuple(t.shape)}")
    return t.expand(batch)


def additive_key_mask(mask: torch.Tensor) -> torch.Tensor:
    """A boolean key mask ``(B, ...)`` that behaves as the originals' additive ``-10000`` bias: a sample hiding every
    key attends to all of them (the bias shifts all its scores alike), where dropping them would leave none."""
    hides_all = ~mask.flatten(1).any(dim=1)
    return mask | hides_all.view(-1, *[1] * (mask.dim() - 1))


def caption_mask(
    mask: torch.Tensor, batch: int, length: int, device: torch.device, *, name: str, shared: bool = False
) -> torch.Tensor:
    """A caption mask as the originals take it (``(B, L)`` or ``(B, 1, L)``, 1/0 or boolean, nonzero = real token;
    one ``(1, L)`` row for every sample when ``shared``) as a boolean ``(B, L)``; ``name`` is the argument's."""
    if mask.dim() == 3 and mask.shape[1] == 1:
        mask = mask.squeeze(1)
    if mask.dim() != 2 or mask.shape[0] not in ((1, batch) if shared else (batch,)) or mask.shape[1] != length:
        also = ", (1, L)" if shared else ""
        raise ValueError(f"{name} must be (B, L) = ({batch}, {length}){also} or (B, 1, L), got {tuple(mask.shape)}")
    return mask.to(device).bool().expand(batch, -1)


def text_key_mask(mask: torch.Tensor | None, batch: int, length: int, device: torch.device) -> torch.Tensor | None:
    """A caption mask as the originals take it (see :func:`caption_mask`) as the boolean ``(B, L)`` key mask core
    attention takes (see :func:`additive_key_mask`)."""
    if mask is None:
        return None
    return additive_key_mask(caption_mask(mask, batch, length, device, name="encoder_attention_mask"))


class PatchedBackbone(STBackbone):
    """A backbone whose tokens are each frame's ``p x p`` latent patches plus 2-D sin-cos positions (DiT, Latte).

    ``interpolation_scale`` divides the position grid as diffusers' ``PatchEmbed`` does; the grid's base size
    is the checkpoint's ``sample_size // patch_size``.
    """

    def __init__(
        self,
        dim: int,
        in_channels: int,
        out_channels: int,
        patch_size: int,
        sample_size: int,
        interpolation_scale: float = 1.0,
    ) -> None:
        super().__init__()
        self.dim = dim
        self.in_channels, self.out_channels = in_channels, out_channels
        self.patch_size, self.sample_size = patch_size, sample_size
        self.interpolation_scale = interpolation_scale
        self.patch_embed = PatchEmbed2D(patch_size, in_channels, dim)

    def patchify(self, latents: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """``(B, C, T, H, W)`` latents to ``(B, T, S, C)`` tokens with positions added, and the patch grid."""
        grid = (latents.shape[-2] // self.patch_size, latents.shape[-1] // self.patch_size)
        x = self.patch_embed(latents)
        return add_sincos_2d(x, grid, self.sample_size // self.patch_size, self.interpolation_scale), grid

    def unpatchify(self, x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """Head outputs ``(B, T, S, p*p*C_out)`` back to ``(B, C_out, T, H, W)`` latents."""
        return unpatchify(x, self.out_channels, (1, self.patch_size, self.patch_size), grid)
