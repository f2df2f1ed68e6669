"""Rotary position embeddings of ``(B, T, S, H, D)`` queries and keys: along one axis, or over the video grid.

Both rotate channel pairs by ``position * theta ** (-2i / d)`` (``d`` the width rotated by one axis), pairing
adjacent channels ``(0, 1), (2, 3), ...`` (``interleaved=True``, the ``rotary-embedding-torch``, Wan and
HunyuanVideo convention) or the two halves ``(i, i + d/2)`` (``False``, GPT-NeoX and Open-Sora-Plan). Angles
and the rotation run in float32 for every input dtype.

Both are token-wise given each token's position, so they take where the tensor's first token sits in the
video (``start``: frame, spatial token): sequence parallelism rotates a shard of the tokens by its global
positions (ring attention), with no table handed around.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..layout import AttentionAxis, VideoGrid

__all__ = ["GridRotaryEmbedding", "Rotary", "RotaryEmbedding"]

_AXIS_DIM = {AttentionAxis.TEMPORAL: 1, AttentionAxis.SPATIAL: 2}
GRID_AXES = "thw"


def _inv_freq(dim: int, theta: float) -> torch.Tensor:
    return 1.0 / (theta ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim))


def _rotated(x: torch.Tensor, positions: torch.Tensor, inv_freq: torch.Tensor, interleaved: bool) -> torch.Tensor:
    """``x: (B, T, S, H, d)`` (float32) rotated by float ``positions`` broadcastable to ``(T, S)``."""
    freqs = positions[..., None] * inv_freq.to(positions.device)
    angles = freqs.repeat_interleave(2, dim=-1) if interleaved else torch.cat([freqs, freqs], dim=-1)
    cos, sin = angles.cos().unsqueeze(-2), angles.sin().unsqueeze(-2)  # broadcast over the heads
    if interleaved:
        pairs = x.unflatten(-1, (-1, 2))
        turned = torch.stack((-pairs[..., 1], pairs[..., 0]), dim=-1).flatten(-2)
    else:
        first, second = x.chunk(2, dim=-1)
        turned = torch.cat((-second, first), dim=-1)
    return x * cos + turned * sin


def _check_heads(x: torch.Tensor, head_dim: int) -> None:
    if x.dim() != 5 or x.shape[-1] != head_dim:
        raise ValueError(f"expected (B, T, S, H, {head_dim}) queries/keys, got {tuple(x.shape)}")


class RotaryEmbedding(nn.Module):
    """1-D RoPE over the positions of the attended axis (frames for temporal attention, as in STDiT3).

    Positions count from ``start`` along the axis (0 for a whole axis, which is what every attention over
    one axis sees, also under sequence parallelism); ``grid`` is not needed.
    """

    def __init__(self, head_dim: int, theta: float = 10000.0, interleaved: bool = True) -> None:
        super().__init__()
        if head_dim % 2:
            raise ValueError(f"RoPE needs an even head dim, got {head_dim}")
        self.head_dim = head_dim
        self.interleaved = interleaved
        self.register_buffer("inv_freq", _inv_freq(head_dim, theta), persistent=False)

    def forward(
        self, x: torch.Tensor, axis: AttentionAxis, grid: VideoGrid | None = None, start: tuple[int, int] = (0, 0)
    ) -> torch.Tensor:
        """Rotate ``x: (B, T, S, H, D)`` by the position of each token along ``axis``."""
        if axis not in _AXIS_DIM:
            raise ValueError(f"1-D RoPE applies along the temporal or spatial axis, not {axis}")
        _check_heads(x, self.head_dim)
        dim = _AXIS_DIM[axis]
        first = start[dim - 1]
        positions = torch.arange(first, first + x.shape[dim], device=x.device, dtype=torch.float32)
        positions = positions[:, None] if dim == 1 else positions[None, :]
        return _rotated(x.float(), positions, self.inv_freq, self.interleaved).to(x.dtype)


class GridRotaryEmbedding(nn.Module):
    """RoPE over each token's ``(t, h, w)`` place in the video grid: 3-D for FULL attention, 2-D for SPATIAL.

    The head dim is cut, in the order of ``axes`` (``"thw"``, or ``"hw"`` for spatial attention), into
    ``split`` channels per axis (default: equal parts); each part rotates by the token's position along its
    axis divided by that axis' ``interpolation_scale``, with frequencies ``theta ** (-2i / part)``.
    The defaults are Open-Sora-Plan v1.2's RoPE3D (equal thirds, halves rotation, ``position / scale``);
    Wan 2.x is ``split=(d - 4 * (d // 6), 2 * (d // 6), 2 * (d // 6)), interleaved=True``.
    Positions come from the grid ``embed()`` declared (``Conditioning.grid``), so the attention must be
    given it.
    """

    def __init__(
        self,
        head_dim: int,
        axes: str = GRID_AXES,
        split: Sequence[int] | None = None,
        *,
        theta: float = 10000.0,
        interpolation_scale: Sequence[float] | None = None,
        interleaved: bool = False,
    ) -> None:
        super().__init__()
        if not axes or len(set(axes)) != len(axes) or set(axes) - set(GRID_AXES):
            raise ValueError(f"axes must be distinct letters of {GRID_AXES!r} (e.g. 'thw' or 'hw'), got {axes!r}")
        if split is None:
            if head_dim % len(axes):
                raise ValueError(
                    f"head dim {head_dim} does not split equally over the {len(axes)} axes {axes!r}; pass split="
                )
            split = [head_dim // len(axes)] * len(axes)
        split = list(split)
        if len(split) != len(axes) or any(n < 2 or n % 2 for n in split) or sum(split) != head_dim:
            raise ValueError(
                f"split must give each of the axes {axes!r} an even, positive number of channels summing to the "
                f"head dim {head_dim}, got {split}"
            )
        scales = [1.0] * len(axes) if interpolation_scale is None else list(interpolation_scale)
        if len(scales) != len(axes) or any(not s > 0 for s in scales):
            raise ValueError(f"interpolation_scale must be one positive number per axis of {axes!r}, got {scales}")
        self.head_dim, self.axes, self.split = head_dim, axes, split
        self.interpolation_scale = scales
        self.interleaved = interleaved
        for name, width in zip(axes, split):
            self.register_buffer(f"inv_freq_{name}", _inv_freq(width, theta), persistent=False)

    def forward(
        self, x: torch.Tensor, axis: AttentionAxis, grid: VideoGrid | None, start: tuple[int, int] = (0, 0)
    ) -> torch.Tensor:
        """Rotate ``x: (B, T, S, H, D)``, whose first token sits at ``start`` (frame, spatial token) of ``grid``."""
        if axis is not AttentionAxis.FULL and not (axis is AttentionAxis.SPATIAL and "t" not in self.axes):
            raise ValueError(
                f"a grid rotary embedding over {self.axes!r} rotates full attention, or spatial attention with "
                f"axes 'hw'; got {axis.value} attention (use RotaryEmbedding along one axis)"
            )
        if grid is None:
            raise ValueError(
                "a grid rotary embedding needs the video grid: embed() must set Conditioning.grid and the block "
                "pass grid=cond.grid to its attention"
            )
        _check_heads(x, self.head_dim)
        t, h, w = grid.positions(x.shape[1], x.shape[2], start, x.device)
        positions = {"t": t, "h": h, "w": w}
        parts = x.float().split(self.split, dim=-1)
        rotated = [
            _rotated(part, positions[name].float() / scale, getattr(self, f"inv_freq_{name}"), self.interleaved)
            for part, name, scale in zip(parts, self.axes, self.interpolation_scale)
        ]
        return torch.cat(rotated, dim=-1).to(x.dtype)


Rotary = RotaryEmbedding | GridRotaryEmbedding
"""Either rotary embedding: ``rope(x, axis, grid, start)``."""
