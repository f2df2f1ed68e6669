"""Exponential moving average of a model's weights, kept in float32 whatever the training precision."""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable

import torch
from torch import nn

__all__ = ["EMA"]


class EMA:
    """``shadow = decay * shadow + (1 - decay) * param`` after each optimizer step.

    Tracks trainable parameters only: frozen parameters (``requires_grad=False``) never change, and
    buffers are not weights. Names matching any ``exclude`` glob (e.g. ``"*pos_embed*"``) are skipped
    too. The shadow is float32 so that small updates are not lost to bf16 rounding.
    """

    def __init__(self, model: nn.Module, decay: float = 0.9999, exclude: Iterable[str] = ()) -> None:
        if not 0.0 <= decay <= 1.0:
            raise ValueError(f"EMA decay must lie in [0, 1], got {decay}")
        self.decay = decay
        self.exclude = tuple(exclude)
        self.shadow: dict[str, torch.Tensor] = {name: p.detach().float().clone() for name, p in self._tracked(model)}

    def _tracked(self, model: nn.Module) -> list[tuple[str, nn.Parameter]]:
        return [
            (name, p)
            for name, p in model.named_parameters()
            if p.requires_grad and not any(fnmatch.fnmatchcase(name, pattern) for pattern in self.exclude)
        ]

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move the shadow towards ``model``'s current weights."""
        tracked = dict(self._tracked(model))
        if tracked.keys() != self.shadow.keys():
            missing = sorted(set(self.shadow) ^ set(tracked))
            raise ValueError(f"the model's trainable parameters differ from the EMA's: {missing[:5]}")
        for name, shadow in self.shadow.items():
            shadow.lerp_(tracked[name].detach().float(), 1.0 - self.decay)

    @torch.no_grad()
    def copy_to(self, model: nn.Module) -> None:
        """Write the averaged weights into ``model`` (e.g. an inference copy), cast to its dtypes."""
        params = dict(model.named_parameters())
        for name, shadow in self.shadow.items():
            params[name].copy_(shadow)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {name: t.clone() for name, t in self.shadow.items()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        if state.keys() != self.shadow.keys():
            diff = sorted(set(state) ^ set(self.shadow))
            raise ValueError(f"EMA state does not match the model's tracked parameters: {diff[:5]}")
        for name, tensor in state.items():
            self.shadow[name].copy_(tensor.float())
