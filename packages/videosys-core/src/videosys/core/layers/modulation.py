"""adaLN helpers: how a conditioning vector shifts, scales and gates a block's branches."""

from __future__ import annotations

import torch

__all__ = ["modulate", "split_modulation"]


def modulate(x: torch.Tensor, shift: torch.Tensor | None, scale: torch.Tensor | None) -> torch.Tensor:
    """``x * (1 + scale) + shift`` (either may be None); both broadcast against ``x``."""
    if scale is not None:
        x = x * (1 + scale)
    if shift is not None:
        x = x + shift
    return x


def split_modulation(params: torch.Tensor, chunks: int, ndim: int = 4) -> tuple[torch.Tensor, ...]:
    """Split ``(B, chunks * C)`` or ``(B, chunks, C)`` adaLN parameters into ``chunks`` tensors.

    Each comes back shaped ``(B, 1, ..., 1, C)`` with ``ndim`` dims, ready to broadcast over
    ``(B, T, S, C)`` tokens without knowing how they are sharded.
    """
    if params.dim() == 2:
        if params.shape[1] % chunks:
            raise ValueError(f"modulation of width {params.shape[1]} does not split into {chunks} equal chunks")
        params = params.reshape(params.shape[0], chunks, -1)
    if params.dim() != 3 or params.shape[1] != chunks:
        raise ValueError(f"expected modulation shaped (B, {chunks}*C) or (B, {chunks}, C), got {tuple(params.shape)}")
    view = (params.shape[0],) + (1,) * (ndim - 2) + (params.shape[2],)
    return tuple(p.reshape(view) for p in params.unbind(dim=1))
