"""The output layer: modulated norm then a linear map back to patch values."""

from __future__ import annotations

import torch
from torch import nn

from .modulation import modulate, split_modulation

__all__ = ["FinalLayer"]


class FinalLayer(nn.Module):
    """``linear(modulate(norm(x), shift, scale))`` with adaLN parameters from ``cond``.

    ``modulation="table"``: ``shift, scale = scale_shift_table + cond`` with ``cond: (B, C)`` (PixArt,
    Latte, STDiT3), or laid out like the tokens, ``(B, T|1, S|1, C)`` (STDiT3's frames at timestep 0).
    ``modulation="linear"``: ``shift, scale = adaLN_modulation(cond)`` with a SiLU + linear layer (DiT; CogVideoX
    with ``cond_dim`` its timestep width and an affine norm, ``elementwise_affine=True``).
    """

    def __init__(
        self,
        dim: int,
        out_dim: int,
        modulation: str = "table",
        eps: float = 1e-6,
        *,
        cond_dim: int | None = None,
        elementwise_affine: bool = False,
    ) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim, elementwise_affine=elementwise_affine, eps=eps)
        self.linear = nn.Linear(dim, out_dim)
        if modulation == "table":
            if cond_dim not in (None, dim):
                raise ValueError(f"a table-modulated final layer takes conditioning of width {dim}, not {cond_dim}")
            self.scale_shift_table = nn.Parameter(torch.randn(2, dim) / dim**0.5)
        elif modulation == "linear":
            self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(cond_dim or dim, 2 * dim))
        else:
            raise ValueError(f"unknown modulation {modulation!r}; expected 'table' or 'linear'")
        self.modulation = modulation

    def shift_scale(self, cond: torch.Tensor, ndim: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
        """The adaLN shift and scale for ``cond``, shaped to broadcast over ``ndim``-dim tokens."""
        if self.modulation == "table":  # shift = table[0] + cond, scale = table[1] + cond
            return split_modulation(torch.cat([cond, cond], dim=-1), 2, ndim, table=self.scale_shift_table)
        return split_modulation(self.adaLN_modulation(cond), 2, ndim)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        return self.linear(modulate(self.norm(x), *self.shift_scale(cond, x.dim())))
