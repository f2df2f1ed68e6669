"""The ``(B, T, S, C)`` video token layout and the axes an attention can mix along.

Inside every VideoSys backbone, hidden states are ``x: (B, T, S, C)``: batch, latent frames, spatial
tokens per frame and channels (images are ``T == 1``). Each attention declares the one axis it mixes
along; every other operation in a block is token-wise. That single rule is what lets sequence
parallelism and attention caching wrap any block without knowing the model.
"""

from __future__ import annotations

import enum
from typing import NamedTuple

import torch

__all__ = [
    "AttentionAxis",
    "VideoGrid",
    "VideoShape",
    "check_video_tokens",
    "to_sequences",
    "from_sequences",
]


class AttentionAxis(enum.Enum):
    """Which tokens an attention mixes."""

    SPATIAL = "spatial"
    """Along ``S``: the tokens of one frame attend to each other, frame by frame."""
    TEMPORAL = "temporal"
    """Along ``T``: the tokens at one spatial position attend across frames."""
    FULL = "full"
    """Along ``T * S`` jointly: full 3-D attention."""
    CROSS = "cross"
    """None of ``x``'s axes: every token queries an external context (text tokens)."""

    @classmethod
    def parse(cls, value: AttentionAxis | str) -> AttentionAxis:
        """Accept an axis or its name (case-insensitive); raise naming the valid choices otherwise."""
        if isinstance(value, cls):
            return value
        if isinstance(value, str):
            try:
                return cls(value.lower())
            except ValueError:
                pass
        choices = ", ".join(repr(a.value) for a in cls)
        raise ValueError(f"unknown attention axis {value!r}; expected one of {choices}")


class VideoShape(NamedTuple):
    """``(B, T, S, C)`` of a token tensor, with named fields."""

    batch: int
    frames: int
    tokens: int
    channels: int


class VideoGrid(NamedTuple):
    """The token grid ``embed()`` produced: ``frames`` x ``height`` x ``width``, ``S = height * width`` row-major.

    Attention sees ``T`` and ``S`` in its tokens but not how ``S`` folds into rows and columns; a backbone
    whose attention needs that (a rotary embedding over ``(t, h, w)``) says so in ``Conditioning.grid``.
    ``origin`` and ``spacing`` place the grid in the coordinates a model's positions use: token ``(i, j, k)``
    sits at ``origin + (i, j, k) * spacing``. Unit spacing from 0 (the default) gives integer positions;
    CogVideoX fits a smaller video into its trained grid (a centre crop of a resized grid), so its
    positions are fractional and start past 0.
    """

    frames: int
    height: int
    width: int
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0)
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)

    @property
    def tokens(self) -> int:
        """Spatial tokens per frame, ``S``."""
        return self.height * self.width

    def check(self, axis: AttentionAxis, frames: int, tokens: int) -> None:
        """Raise unless the grid has positive sizes and matches the whole axes an attention over ``axis`` mixes."""
        sizes = (self.frames, self.height, self.width)
        if any(not isinstance(n, int) or n < 1 for n in sizes):
            raise ValueError(f"a video grid is three positive integers (frames, height, width), got {sizes}")
        whole_t = axis in (AttentionAxis.TEMPORAL, AttentionAxis.FULL)
        whole_s = axis in (AttentionAxis.SPATIAL, AttentionAxis.FULL)
        if (whole_t and frames != self.frames) or (whole_s and tokens != self.tokens):
            raise ValueError(
                f"{axis.value} attention over (T, S) = ({frames}, {tokens}) tokens, but the video grid {sizes} "
                f"has (T, S) = ({self.frames}, {self.tokens}): embed() must declare the grid of the tokens it returns"
            )

    def positions(
        self, frames: int, tokens: int, start: tuple[int, int] = (0, 0), device: torch.device | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(t, h, w)`` of a ``frames x tokens`` block of tokens whose first sits at ``start``.

        ``start`` is (frame, spatial token); the result is shaped ``(frames, 1)``, ``(1, tokens)``,
        ``(1, tokens)``, broadcasting to the block: integer indices on the default unit grid, else
        ``origin + index * spacing`` in float64. Past the grid's end (sequence-parallel padding) the count
        continues: such tokens are never attended to, so any position will do.
        """
        t = torch.arange(start[0], start[0] + frames, device=device)[:, None]
        s = torch.arange(start[1], start[1] + tokens, device=device)[None, :]
        index = (t, s // self.width, s % self.width)
        if self.origin == (0.0, 0.0, 0.0) and self.spacing == (1.0, 1.0, 1.0):
            return index
        return tuple(i.double() * step + first for i, step, first in zip(index, self.spacing, self.origin))


def check_video_tokens(x: torch.Tensor, channels: int | None = None, name: str = "x") -> VideoShape:
    """Validate that ``x`` is ``(B, T, S, C)`` (and has ``channels`` channels) and return its shape."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (B, T, S, C), got {type(x).__name__}")
    if x.dim() != 4:
        raise ValueError(
            f"{name} must have shape (B, T, S, C) (4 dims: batch, frames, spatial tokens, channels), "
            f"got {x.dim()} dims with shape {tuple(x.shape)}"
        )
    if channels is not None and x.shape[-1] != channels:
        raise ValueError(f"{name} has {x.shape[-1]} channels (last dim of {tuple(x.shape)}), expected {channels}")
    return VideoShape(*x.shape)


def to_sequences(x: torch.Tensor, axis: AttentionAxis) -> torch.Tensor:
    """Fold ``(B, T, S, ...)`` into ``(batch', L, ...)``: one sequence per independent attention.

    SPATIAL gives ``(B*T, S, ...)``, TEMPORAL ``(B*S, T, ...)``, FULL and CROSS ``(B, T*S, ...)``.
    Trailing dims (channels, or heads and head dim) are carried unchanged.
    """
    axis = AttentionAxis.parse(axis)
    if x.dim() < 3:
        raise ValueError(f"expected a tensor shaped (B, T, S, ...), got shape {tuple(x.shape)}")
    b, t, s, *rest = x.shape
    if axis is AttentionAxis.SPATIAL:
        return x.reshape(b * t, s, *rest)
    if axis is AttentionAxis.TEMPORAL:
        return x.transpose(1, 2).reshape(b * s, t, *rest)
    return x.reshape(b, t * s, *rest)


def from_sequences(y: torch.Tensor, axis: AttentionAxis, batch: int, frames: int, tokens: int) -> torch.Tensor:
    """Inverse of :func:`to_sequences` for a video of ``batch`` x ``frames`` x ``tokens`` tokens."""
    axis = AttentionAxis.parse(axis)
    rest = y.shape[2:]
    if axis is AttentionAxis.SPATIAL:
        return y.reshape(batch, frames, tokens, *rest)
    if axis is AttentionAxis.TEMPORAL:
        return y.reshape(batch, tokens, frames, *rest).transpose(1, 2)
    return y.reshape(batch, frames, tokens, *rest)
