"""Pyramid Attention Broadcast settings published with each model, as plain data.

They live with the model, not in ``videosys-pab``: a model's defaults are a fact about the model. MLP
reuse is keyed by positions in the sampling loop (fractions of it), never by exact timestep values,
so it behaves the same under any scheduler and step count. :meth:`PABDefaults.to_pab_config` turns
them into a ``videosys.pab.PABConfig`` when that package is installed.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

__all__ = ["EMBEDDED_PAB", "LATTE_PAB", "AttentionBroadcast", "MLPReuse", "PABDefaults"]


@dataclass(frozen=True)
class AttentionBroadcast:
    """Compute one kind of attention every ``interval`` steps while the timestep lies inside ``window``."""

    interval: int
    window: tuple[float, float]
    """Timesteps on the 0..1000 scale; outside ``(low, high)`` the attention is always computed."""


@dataclass(frozen=True)
class MLPReuse:
    """Reuse the MLP output of ``layers`` for ``reuse_steps`` steps after each point of the sampling loop."""

    layers: tuple[int, ...]
    """Layer indices, counted per axis (spatial layer i and temporal layer i)."""
    points: tuple[float, ...]
    """Positions in the loop as fractions of the step count (step index / number of steps)."""
    reuse_steps: int


@dataclass(frozen=True)
class PABDefaults:
    """Per-kind broadcast settings (None: that kind is always computed) and optional MLP reuse."""

    spatial: AttentionBroadcast | None = None
    temporal: AttentionBroadcast | None = None
    cross: AttentionBroadcast | None = None
    full: AttentionBroadcast | None = None
    mlp: MLPReuse | None = None

    def as_dict(self) -> dict[str, Any]:
        """Nested plain dicts and tuples (for configs, logs and ``PABConfig``)."""
        return dataclasses.asdict(self)

    def to_pab_config(self) -> Any:
        """A ``videosys.pab.PABConfig`` with these settings; needs ``pip install videosys-pab``."""
        try:
            from videosys.pab import Broadcast, PABConfig
            from videosys.pab import MLPReuse as PABMLPReuse
        except ImportError as err:
            raise ImportError("Pyramid Attention Broadcast needs videosys-pab: pip install videosys-pab") from err
        kinds = {
            name: Broadcast(rule.interval, window=rule.window)
            for name in ("spatial", "temporal", "cross", "full")
            if (rule := getattr(self, name)) is not None
        }
        mlp = None
        if self.mlp is not None:
            mlp = PABMLPReuse(self.mlp.layers, at=self.mlp.points, steps=self.mlp.reuse_steps, unit="fraction")
        return PABConfig(**kinds, mlp=mlp)


def _latte_mlp_points(timesteps: tuple[int, ...], num_steps: int = 50, spacing: int = 20) -> tuple[float, ...]:
    """Latte's published MLP reuse timesteps as positions in its 50-step DDIM loop (timesteps 980, 960, ..., 0)."""
    first = (num_steps - 1) * spacing
    return tuple((first - t) / spacing / num_steps for t in timesteps)


LATTE_PAB = PABDefaults(
    spatial=AttentionBroadcast(interval=2, window=(100, 800)),
    temporal=AttentionBroadcast(interval=3, window=(100, 800)),
    cross=AttentionBroadcast(interval=6, window=(100, 800)),
    mlp=MLPReuse(layers=(0, 1, 2, 3, 4), points=_latte_mlp_points((720, 640, 560, 480, 400)), reuse_steps=2),
)
"""Latte-1: spatial 2 / temporal 3 / cross 6 on (100, 800); MLP of layers 0-4 reused for 2 steps after the
steps at timesteps 720, 640, 560, 480, 400 of the 50-step DDIM loop (positions 0.26, 0.34, 0.42, 0.50, 0.58)."""

EMBEDDED_PAB = PABDefaults(
    spatial=AttentionBroadcast(interval=2, window=(100, 800)),
    temporal=AttentionBroadcast(interval=3, window=(100, 800)),
    cross=AttentionBroadcast(interval=4, window=(100, 800)),
)
"""videosys-tiny (20 trailing DDIM steps): spatial 2 / temporal 3 / cross 4 on (100, 800), no MLP reuse;
measured in ``benchmarks/embedded_model.py`` (speed and PSNR against the clip without PAB)."""
