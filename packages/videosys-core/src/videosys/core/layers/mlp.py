"""The token-wise feed-forward network of a transformer block."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["FeedForward", "gelu_tanh"]


def gelu_tanh(x: torch.Tensor) -> torch.Tensor:
    """GELU with the tanh approximation, used by DiT, PixArt, Latte and Open-Sora."""
    return F.gelu(x, approximate="tanh")


class FeedForward(nn.Module):
    """``fc2(act(fc1(x)))``."""

    def __init__(
        self, dim: int, hidden_dim: int, act: Callable[[torch.Tensor], torch.Tensor] = gelu_tanh, bias: bool = True
    ) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim, bias=bias)
        self.act = act
        self.fc2 = nn.Linear(hidden_dim, dim, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))
