"""What travels beside the tokens through every block, and which of it is laid out like the tokens.

Most conditioning (a timestep embedding per sample, text tokens) is the same for every token of a
sample. Some varies along the frames or the spatial positions: STDiT3 modulates frames given as
conditioning with timestep 0 and the others with ``t``. Such tensors are declared as *token fields*
(:func:`token_field`): shaped ``(B, T, S, ...)`` with size 1 on an axis along which they do not vary,
so that sequence parallelism can shard, pad and trim them together with the tokens.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import torch

from .layout import VideoGrid

__all__ = ["Conditioning", "token_field", "token_fields"]

_TOKEN_FIELD = "videosys_token_field"


def token_field(default: torch.Tensor | None = None) -> Any:
    """A :class:`Conditioning` field that may vary along the tokens.

    Its value is ``(B, k)`` (the same for every token of a sample) or laid out like the tokens,
    ``(B, T|1, S|1, ...)``. Blocks receive the part that matches their tokens: under sequence
    parallelism, the rank's slice of the sharded axis (padded like the tokens); the backbone's ``head``
    receives the whole tensor.
    """
    return field(default=default, metadata={_TOKEN_FIELD: True})  # also spelt out in Conditioning (ruff RUF009)


def token_fields(cond: Conditioning) -> dict[str, torch.Tensor]:
    """The token fields of ``cond`` whose value is laid out like the tokens (3 dims or more), by name.

    Raises naming the field when a token field holds something else than None, ``(B, k)`` or such a tensor.
    """
    found = {}
    for f in dataclasses.fields(cond):
        value = getattr(cond, f.name)
        if not f.metadata.get(_TOKEN_FIELD) or value is None:
            continue
        if not isinstance(value, torch.Tensor) or value.dim() < 2:
            shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            raise ValueError(
                f"{type(cond).__name__}.{f.name} is a token field: expected a tensor shaped (B, k) or "
                f"(B, T|1, S|1, ...) laid out like the tokens, got {shape}"
            )
        if value.dim() >= 3:
            found[f.name] = value
    return found


@dataclass
class Conditioning:
    """Everything a block needs besides its tokens.

    Plain fields are the same for every token of a sample and identical on every sequence-parallel
    rank. Subclasses add typed fields; those declared with :func:`token_field` vary along ``T``
    and/or ``S`` and are sharded with the tokens.
    """

    modulation: torch.Tensor | None = field(default=None, metadata={_TOKEN_FIELD: True})  # a token_field()
    """adaLN input: ``(B, k)`` per sample (the embedded timestep, and class label for DiT), or
    ``(B, T|1, S|1, k)`` when it varies along the frames or positions (STDiT3's ``x_mask``)."""
    context: torch.Tensor | None = None
    """Text tokens for cross-attention, ``(B, L, Cc)``."""
    context_mask: torch.Tensor | None = None
    """Boolean ``(B, L)``, True for real (non-padding) text tokens."""
    extras: dict[str, Any] = field(default_factory=dict)
    """Model-specific values the head needs (e.g. the raw timestep embedding)."""
    grid: VideoGrid | None = None
    """The ``(T, H, W)`` token grid of the whole video, for attention whose positions are 2-D or 3-D
    (:class:`~videosys.core.layers.GridRotaryEmbedding`); blocks pass it to their attention."""
    attention_mask: torch.Tensor | None = None
    """Self-attention key mask of the whole video, boolean, broadcastable to ``(B, T, S)``, True = attend
    (Open-Sora-Plan v1.2 masks padded latent regions). A plain field, the same on every sequence-parallel
    rank: each attention takes the part its own tokens need; blocks pass it as ``mask=``."""
