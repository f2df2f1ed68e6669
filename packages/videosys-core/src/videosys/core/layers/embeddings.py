"""Embeddings shared by the model families: timesteps, captions, class labels, sin-cos positions."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from ..layout import AttentionAxis
from .mlp import gelu_tanh

__all__ = [
    "AxisEmbedding",
    "CaptionProjection",
    "LabelEmbedder",
    "TimestepEmbedder",
    "sincos_1d",
    "sincos_2d",
    "timestep_embedding",
]


def timestep_embedding(
    t: torch.Tensor,
    dim: int,
    max_period: float = 10000.0,
    flip_sin_to_cos: bool = True,
    downscale_freq_shift: float = 0.0,
) -> torch.Tensor:
    """Sinusoidal features ``(N, dim)`` of (possibly fractional) timesteps ``t: (N,)``.

    The defaults give ``[cos, sin]`` with frequencies ``max_period ** (-i / half)``: the DiT,
    PixArt, Latte and Open-Sora convention (diffusers' ``flip_sin_to_cos=True, shift=0``).
    """
    if t.dim() != 1:
        raise ValueError(f"timesteps must be 1-D (one per sample), got shape {tuple(t.shape)}")
    half = dim // 2
    exponent = -math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device)
    freqs = torch.exp(exponent / (half - downscale_freq_shift))
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.sin(args), torch.cos(args)], dim=-1)
    if flip_sin_to_cos:
        emb = torch.cat([emb[:, half:], emb[:, :half]], dim=-1)
    if dim % 2:
        emb = torch.nn.functional.pad(emb, (0, 1))
    return emb


class TimestepEmbedder(nn.Module):
    """Sinusoidal features of the timestep through a two-layer SiLU MLP."""

    def __init__(self, hidden_dim: int, frequency_dim: int = 256, **sinusoid: float | bool) -> None:
        super().__init__()
        self.frequency_dim = frequency_dim
        self.sinusoid = sinusoid
        self.linear_1 = nn.Linear(frequency_dim, hidden_dim)
        self.act = nn.SiLU()
        self.linear_2 = nn.Linear(hidden_dim, hidden_dim)

    def forward(self, t: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
        features = timestep_embedding(t, self.frequency_dim, **self.sinusoid)
        features = features.to(dtype or self.linear_1.weight.dtype)
        return self.linear_2(self.act(self.linear_1(features)))


class CaptionProjection(nn.Module):
    """Text-encoder features to the backbone width: ``linear_2(act(linear_1(y)))``."""

    def __init__(self, in_dim: int, hidden_dim: int, act: Callable[[torch.Tensor], torch.Tensor] = gelu_tanh) -> None:
        super().__init__()
        self.linear_1 = nn.Linear(in_dim, hidden_dim)
        self.act = act
        self.linear_2 = nn.Linear(hidden_dim, hidden_dim)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return self.linear_2(self.act(self.linear_1(y)))


class LabelEmbedder(nn.Module):
    """Class labels to vectors, with an extra "null" class (index ``num_classes``) for guidance."""

    def __init__(self, num_classes: int, hidden_dim: int, with_null_class: bool = True) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.embedding_table = nn.Embedding(num_classes + int(with_null_class), hidden_dim)

    @property
    def null_class(self) -> int:
        """The label that means "no class" (classifier-free guidance's unconditional branch)."""
        if self.embedding_table.num_embeddings == self.num_classes:
            raise ValueError("this label embedder was built without a null class")
        return self.num_classes

    def forward(self, labels: torch.Tensor) -> torch.Tensor:
        if labels.dtype not in (torch.int32, torch.int64):
            raise TypeError(f"class labels must be integers, got {labels.dtype}")
        top = self.embedding_table.num_embeddings
        if labels.numel() and (labels.min() < 0 or labels.max() >= top):
            raise ValueError(f"class labels must lie in 0..{top - 1}, got {labels.tolist()}")
        return self.embedding_table(labels)


def sincos_1d(positions: torch.Tensor, dim: int) -> torch.Tensor:
    """``(len(positions), dim)`` features ``[sin(p w), cos(p w)]``, ``w = 10000 ** (-2i / dim)`` (float64)."""
    if dim % 2:
        raise ValueError(f"sin-cos embedding needs an even dim, got {dim}")
    omega = 1.0 / 10000 ** (torch.arange(dim // 2, dtype=torch.float64) / (dim / 2.0))
    args = positions.to(torch.float64).reshape(-1)[:, None] * omega[None]
    return torch.cat([torch.sin(args), torch.cos(args)], dim=1)


def sincos_2d(
    height: int, width: int, dim: int, base_size: int | None = None, interpolation_scale: float = 1.0
) -> torch.Tensor:
    """``(height * width, dim)`` 2-D sin-cos positions in row-major token order (DiT/PixArt/Latte).

    Half the channels encode the column, half the row. Positions are token indices (MAE/DiT);
    ``base_size`` stretches each axis to ``base_size`` positions and ``interpolation_scale`` divides
    them, as PixArt and Latte do for resolutions other than the trained one.
    """
    if dim % 4:
        raise ValueError(f"2-D sin-cos embedding needs dim divisible by 4, got {dim}")
    rows = torch.arange(height, dtype=torch.float64) / interpolation_scale
    cols = torch.arange(width, dtype=torch.float64) / interpolation_scale
    if base_size is not None:
        rows, cols = rows * (base_size / height), cols * (base_size / width)
    grid_rows, grid_cols = torch.meshgrid(rows, cols, indexing="ij")
    # DiT's reference builds the grid with the column coordinate first.
    return torch.cat([sincos_1d(grid_cols, dim // 2), sincos_1d(grid_rows, dim // 2)], dim=1)


class AxisEmbedding(nn.Module):
    """Adds a fixed per-position table along one axis of ``(B, T, S, C)`` tokens.

    The only token-wise operation whose value depends on a token's position, so it declares its
    ``axis``: sequence parallelism passes ``offset``, the global index of the first local position.
    """

    def __init__(self, table: torch.Tensor, axis: AttentionAxis) -> None:
        super().__init__()
        if axis not in (AttentionAxis.TEMPORAL, AttentionAxis.SPATIAL):
            raise ValueError(f"a position table lies along the temporal or spatial axis, not {axis}")
        if table.dim() != 2:
            raise ValueError(f"position table must be (positions, channels), got {tuple(table.shape)}")
        self.axis = axis
        self.register_buffer("table", table, persistent=False)

    def forward(self, x: torch.Tensor, offset: int = 0) -> torch.Tensor:
        dim = 1 if self.axis is AttentionAxis.TEMPORAL else 2
        length = x.shape[dim]
        if offset + length > self.table.shape[0]:
            raise ValueError(
                f"positions {offset}..{offset + length - 1} along the {self.axis.value} axis exceed the "
                f"table of {self.table.shape[0]} positions"
            )
        rows = self.table[offset : offset + length].to(x.dtype)
        return x + (rows[None, :, None, :] if dim == 1 else rows[None, None, :, :])
