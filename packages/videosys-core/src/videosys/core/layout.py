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
