"""Pieces the diffusers-layout DiT backbones (Latte, DiT) share beyond the core layers."""

from __future__ import annotations

import functools

import torch

from videosys.core.layers import sincos_2d

__all__ = ["add_sincos_2d", "batch_timesteps", "require_config"]


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


def require_config(config: dict, model: str, **expected: object) -> None:
    """Raise naming the field when a checkpoint's config asks for a variant this backbone does not implement."""
    for key, value in expected.items():
        if key in config and config[key] != value:
            raise ValueError(
                f"{model} config has {key}={config[key]!r}; VideoSys implements {key}={value!r} "
                "(the published checkpoints' value)"
            )


def batch_timesteps(timestep: torch.Tensor | float, batch: int, device: torch.device) -> torch.Tensor:
    """One timestep per sample, ``(batch,)``, from a number, a 0-d tensor or a ``(batch,)`` tensor."""
    t = torch.as_tensor(timestep, device=device)
    if t.dim() == 0:
        return t.expand(batch)
    if t.dim() != 1 or t.shape[0] not in (1, batch):
        raise ValueError(f"timestep must be a number or shaped ({batch},), got shape {tuple(t.shape)}")
    return t.expand(batch)
