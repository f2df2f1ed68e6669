"""The denoising-step context: which sampling step the model is being called for.

A pipeline wraps each step of its sampling loop in ``with denoising_step(i, t, n):``. Modules that
behave differently across steps (attention caching) read :func:`current_step` instead of being told
through arguments, so a backbone's signature stays the model's own. The state is a context variable:
no global configuration object, and nested or concurrent generations each see their own step.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from dataclasses import dataclass

import torch

__all__ = ["DenoisingStep", "current_step", "denoising_step"]

_current: contextvars.ContextVar[DenoisingStep | None] = contextvars.ContextVar("videosys_step", default=None)


@dataclass(frozen=True)
class DenoisingStep:
    """One step of a sampling loop."""

    index: int
    """Position in the loop, 0 for the first step of a generation."""
    timestep: float
    """The model timestep on the 0..1000 scale (1000 = pure noise)."""
    num_steps: int
    """Steps in the whole loop."""

    @property
    def fraction(self) -> float:
        """How far through the loop this step is: 0 for the first step, approaching 1 for the last."""
        return self.index / self.num_steps

    @property
    def is_first(self) -> bool:
        """True on the step that starts a new generation."""
        return self.index == 0


def _as_float(timestep: float | int | torch.Tensor) -> float:
    if isinstance(timestep, torch.Tensor):
        if timestep.numel() == 0:
            raise ValueError("timestep tensor is empty")
        flat = timestep.detach().flatten()
        if not torch.all(flat == flat[0]):
            raise ValueError(f"timestep tensor holds different values {flat.tolist()}; one step has one timestep")
        return float(flat[0])
    return float(timestep)


@contextlib.contextmanager
def denoising_step(index: int, timestep: float | int | torch.Tensor, num_steps: int) -> Iterator[DenoisingStep]:
    """Declare that model calls inside the block belong to step ``index`` of ``num_steps`` at ``timestep``."""
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    if not 0 <= index < num_steps:
        raise ValueError(f"step index {index} is outside the loop of {num_steps} steps (0..{num_steps - 1})")
    value = _as_float(timestep)
    if not 0.0 <= value <= 1000.0:
        raise ValueError(f"timestep {value} is outside the 0..1000 scale")
    step = DenoisingStep(index=index, timestep=value, num_steps=num_steps)
    token = _current.set(step)
    try:
        yield step
    finally:
        _current.reset(token)


def current_step() -> DenoisingStep | None:
    """The step being computed, or None outside a sampling loop (training, a bare forward call)."""
    return _current.get()
