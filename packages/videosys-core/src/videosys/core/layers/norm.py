"""Normalisation layers and the one switch that picks them by name."""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

__all__ = ["NormKind", "RMSNorm", "make_norm"]

NormKind = Literal["layer", "rms"]


class RMSNorm(nn.Module):
    """Root-mean-square norm, computed in float32 and cast back (the Llama / Open-Sora convention)."""

    def __init__(self, dim: int, eps: float = 1e-6, elementwise_affine: bool = True) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim)) if elementwise_affine else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        h = h.to(dtype)
        return h * self.weight if self.weight is not None else h


def make_norm(kind: NormKind, dim: int, eps: float = 1e-6, elementwise_affine: bool = True) -> nn.Module:
    """``"layer"`` (LayerNorm) or ``"rms"`` (RMSNorm) over the last dimension."""
    if kind == "layer":
        return nn.LayerNorm(dim, eps=eps, elementwise_affine=elementwise_affine)
    if kind == "rms":
        return RMSNorm(dim, eps=eps, elementwise_affine=elementwise_affine)
    raise ValueError(f"unknown norm kind {kind!r}; expected 'layer' or 'rms'")
