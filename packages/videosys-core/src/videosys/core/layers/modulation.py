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


def split_modulation(
    params: torch.Tensor, chunks: int, ndim: int = 4, table: torch.Tensor | None = None
) -> tuple[torch.Tensor, ...]:
    """Split adaLN parameters into ``chunks`` tensors that broadcast over ``(B, T, S, C)`` tokens.

    Per sample, ``(B, chunks * C)`` or ``(B, chunks, C)``: each comes back ``(B, 1, ..., 1, C)`` with ``ndim``
    dims, whatever the tokens' sharding. Laid out like the tokens, ``(B, T|1, S|1, chunks * C)`` (``ndim``
    dims): each comes back ``(B, T|1, S|1, C)``, one set of values per frame or position. ``table``, a
    learned ``(chunks, C)`` table (adaLN-single), is added first.
    """
    per_token = ndim > 3 and params.dim() == ndim
    if params.dim() == 2 or per_token:
        if params.shape[-1] % chunks:
            raise ValueError(f"modulation of width {params.shape[-1]} does not split into {chunks} equal chunks")
        params = params.unflatten(-1, (chunks, -1))
    if table is not None:
        params = table + params
    if per_token:
        return tuple(params.unbind(dim=-2))
    if params.dim() != 3 or params.shape[1] != chunks:
        raise ValueError(
            f"expected modulation shaped (B, {chunks}*C), (B, {chunks}, C) or laid out like the tokens "
            f"({ndim} dims, channels last), got {tuple(params.shape)}"
        )
    view = (params.shape[0],) + (1,) * (ndim - 2) + (params.shape[2],)
    return tuple(p.reshape(view) for p in params.unbind(dim=1))
