"""The frozen encoders around the trained backbone: a VAE for the frames and a caption encoder."""

from __future__ import annotations

from typing import Protocol

import torch

from .config import EncoderConfig
from .text import HashTextEncoder, T5TextEncoder, TextEncoder

__all__ = ["DiffusersVAE", "IdentityVAE", "VideoEncoder", "build_text_encoder", "build_vae"]


class VideoEncoder(Protocol):
    """``encode((B, 3, T, H, W) in [-1, 1]) -> latents (B, C, T', H', W')``."""

    latent_channels: int
    spatial_factor: int

    def encode(self, video: torch.Tensor) -> torch.Tensor: ...


class IdentityVAE:
    """Train in pixel space: the latents are the frames (the tiny config)."""

    latent_channels = 3
    spatial_factor = 1

    def encode(self, video: torch.Tensor) -> torch.Tensor:
        return video


class DiffusersVAE:
    """A diffusers ``AutoencoderKL`` from a local folder, applied frame by frame (DiT, Latte).

    Uses the posterior mean (not a sample) times ``scaling_factor``, so encoding is deterministic and
    precomputed latents equal on-the-fly ones.
    """

    spatial_factor = 8

    def __init__(self, path: str, scaling_factor: float | None = None, device: str = "cpu") -> None:
        try:
            from diffusers import AutoencoderKL
        except ImportError as err:
            raise ImportError("the diffusers VAE needs diffusers: pip install diffusers") from err
        self.vae = AutoencoderKL.from_pretrained(path).to(device).eval().requires_grad_(False)
        self.latent_channels = self.vae.config.latent_channels
        self.spatial_factor = 2 ** (len(self.vae.config.block_out_channels) - 1)
        self.scaling_factor = scaling_factor if scaling_factor is not None else self.vae.config.scaling_factor
        self.device = device

    @torch.no_grad()
    def encode(self, video: torch.Tensor) -> torch.Tensor:
        b, c, t, h, w = video.shape
        frames = video.transpose(1, 2).reshape(b * t, c, h, w).to(self.device, self.vae.dtype)
        latents = self.vae.encode(frames).latent_dist.mean * self.scaling_factor
        return latents.reshape(b, t, *latents.shape[1:]).transpose(1, 2).float().to(video.device)


def build_vae(config: EncoderConfig, device: str = "cpu") -> VideoEncoder:
    if config.kind == "identity":
        return IdentityVAE()
    if config.kind == "diffusers":
        if not config.path:
            raise ValueError("vae.kind='diffusers' needs vae.path, a local AutoencoderKL folder")
        return DiffusersVAE(config.path, device=device, **config.kwargs)
    raise ValueError(f"unknown vae.kind {config.kind!r}; expected 'identity' or 'diffusers'")


def build_text_encoder(config: EncoderConfig, device: str = "cpu") -> TextEncoder:
    if config.kind == "hash":
        return HashTextEncoder(**config.kwargs)
    if config.kind == "t5":
        if not config.path:
            raise ValueError("text_encoder.kind='t5' needs text_encoder.path, a local T5 folder")
        return T5TextEncoder(config.path, device=device, **config.kwargs)
    raise ValueError(f"unknown text_encoder.kind {config.kind!r}; expected 'hash' or 't5'")
