"""Rotary position embedding along one axis of the ``(B, T, S, H, D)`` query/key layout."""

from __future__ import annotations

import torch
from torch import nn

from ..layout import AttentionAxis

__all__ = ["RotaryEmbedding"]

_AXIS_DIM = {AttentionAxis.TEMPORAL: 1, AttentionAxis.SPATIAL: 2}


class RotaryEmbedding(nn.Module):
    """1-D RoPE over the positions of the attended axis (frames for temporal attention, as in STDiT3).

    ``interleaved=True`` rotates adjacent channel pairs ``(0, 1), (2, 3), ...`` (the
    ``rotary-embedding-torch`` convention Open-Sora uses); ``False`` rotates the two halves
    (the GPT-NeoX convention). Angles are computed in float32 for every input dtype.
    Positions always count from 0 along the whole axis: attentions see their axis whole,
    also under sequence parallelism.
    """

    def __init__(self, head_dim: int, theta: float = 10000.0, interleaved: bool = True) -> None:
        super().__init__()
        if head_dim % 2:
            raise ValueError(f"RoPE needs an even head dim, got {head_dim}")
        self.head_dim = head_dim
        self.interleaved = interleaved
        inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    def angles(self, length: int, device: torch.device) -> torch.Tensor:
        """``(length, head_dim)`` rotation angles, laid out to match the channel pairing."""
        freqs = torch.outer(torch.arange(length, device=device, dtype=torch.float32), self.inv_freq.to(device))
        return freqs.repeat_interleave(2, dim=-1) if self.interleaved else torch.cat([freqs, freqs], dim=-1)

    def _rotate(self, x: torch.Tensor) -> torch.Tensor:
        if self.interleaved:
            pairs = x.unflatten(-1, (-1, 2))
            return torch.stack((-pairs[..., 1], pairs[..., 0]), dim=-1).flatten(-2)
        first, second = x.chunk(2, dim=-1)
        return torch.cat((-second, first), dim=-1)

    def forward(self, x: torch.Tensor, axis: AttentionAxis) -> torch.Tensor:
        """Rotate ``x: (B, T, S, H, D)`` by the position of each token along ``axis``."""
        if axis not in _AXIS_DIM:
            raise ValueError(f"1-D RoPE applies along the temporal or spatial axis, not {axis}")
        if x.dim() != 5 or x.shape[-1] != self.head_dim:
            raise ValueError(f"expected (B, T, S, H, {self.head_dim}) queries/keys, got {tuple(x.shape)}")
        dim = _AXIS_DIM[axis]
        angles = self.angles(x.shape[dim], x.device)
        view = [1] * 5
        view[dim], view[-1] = angles.shape
        cos, sin = angles.cos().reshape(view), angles.sin().reshape(view)
        h = x.float()
        return (h * cos + self._rotate(h) * sin).to(x.dtype)
