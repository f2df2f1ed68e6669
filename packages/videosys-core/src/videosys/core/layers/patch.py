"""Latent videos to ``(B, T, S, C)`` tokens and back."""

from __future__ import annotations

import torch
from torch import nn

from ..layout import check_video_tokens

__all__ = ["PatchEmbed2D", "PatchEmbed3D", "unpatchify"]


def _check_latents(latents: torch.Tensor, channels: int) -> None:
    if latents.dim() != 5:
        raise ValueError(
            f"latents must be (B, C, T, H, W) (5 dims), got {latents.dim()} dims with shape {tuple(latents.shape)}"
        )
    if latents.shape[1] != channels:
        raise ValueError(
            f"latents have {latents.shape[1]} channels (dim 1 of {tuple(latents.shape)}), expected {channels}"
        )


class PatchEmbed2D(nn.Module):
    """Each frame's ``p x p`` patches to tokens with one convolution ``proj`` (DiT, Latte).

    Takes ``(B, C, T, H, W)`` latents, returns ``(B, T, H/p * W/p, dim)`` in row-major patch order.
    """

    def __init__(self, patch_size: int, in_channels: int, dim: int, bias: bool = True) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.in_channels = in_channels
        self.proj = nn.Conv2d(in_channels, dim, kernel_size=patch_size, stride=patch_size, bias=bias)

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        _check_latents(latents, self.in_channels)
        b, c, t, h, w = latents.shape
        p = self.patch_size
        if h % p or w % p:
            raise ValueError(f"latent size {h}x{w} is not divisible by the patch size {p}")
        frames = latents.transpose(1, 2).reshape(b * t, c, h, w)
        tokens = self.proj(frames).flatten(2).transpose(1, 2)
        return tokens.reshape(b, t, -1, tokens.shape[-1])


class PatchEmbed3D(nn.Module):
    """``pt x ph x pw`` spatio-temporal patches to tokens with one 3-D convolution ``proj`` (STDiT3)."""

    def __init__(self, patch_size: tuple[int, int, int], in_channels: int, dim: int, bias: bool = True) -> None:
        super().__init__()
        self.patch_size = tuple(patch_size)
        self.in_channels = in_channels
        self.proj = nn.Conv3d(in_channels, dim, kernel_size=self.patch_size, stride=self.patch_size, bias=bias)

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        _check_latents(latents, self.in_channels)
        sizes = latents.shape[2:]
        if any(n % p for n, p in zip(sizes, self.patch_size)):
            raise ValueError(
                f"latent size {tuple(sizes)} (T, H, W) is not divisible by the patch size {self.patch_size}"
            )
        tokens = self.proj(latents)  # (B, C, T', H', W')
        b, c, t = tokens.shape[:3]
        return tokens.reshape(b, c, t, -1).permute(0, 2, 3, 1)


def unpatchify(
    x: torch.Tensor, out_channels: int, patch_size: tuple[int, int, int], grid: tuple[int, int]
) -> torch.Tensor:
    """``(B, T, S, pt*ph*pw*C)`` head outputs back to ``(B, C, T*pt, H, W)`` latents.

    Each token's channels are ordered ``(pt, ph, pw, C)``, C fastest, as DiT, Latte and STDiT3 emit them;
    ``grid`` is the token grid ``(H/ph, W/pw)``.
    """
    pt, ph, pw = patch_size
    gh, gw = grid
    b, t, s, _ = check_video_tokens(x, channels=pt * ph * pw * out_channels, name="head output")
    if s != gh * gw:
        raise ValueError(f"{s} tokens per frame do not form the {gh}x{gw} grid")
    x = x.reshape(b, t, gh, gw, pt, ph, pw, out_channels)
    x = x.permute(0, 7, 1, 4, 2, 5, 3, 6)  # B, C, T, pt, gh, ph, gw, pw
    return x.reshape(b, out_channels, t * pt, gh * ph, gw * pw)
