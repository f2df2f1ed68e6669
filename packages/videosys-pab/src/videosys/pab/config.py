"""What PAB reuses and when: one broadcast rule per attention kind, and optional MLP reuse.

The rules are pure functions of the denoising step (:class:`~videosys.core.DenoisingStep`), so the
schedule is the same for every model and scheduler: intervals count step indices, windows compare the
step's timestep on the 0..1000 scale (or its fraction of the loop), and MLP reuse names step positions,
never exact timestep values.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from videosys.core import AttentionAxis, DenoisingStep

__all__ = ["Broadcast", "MLPReuse", "PABConfig", "WindowUnit"]

WindowUnit = Literal["timestep", "fraction"]


@dataclass(frozen=True)
class Broadcast:
    """Compute one attention kind every ``interval`` steps inside ``window``, reuse its output in between.

    A step reuses when ``step.index % interval != 0`` and the step lies inside the window; every other
    step computes (and refreshes the cache). ``unit="timestep"`` (the paper's convention): the window is
    ``(low, high)`` on the 0..1000 timestep scale, exclusive, ``low < t < high``. ``unit="fraction"``:
    the window is ``[start, end)`` of the loop, compared with ``step.index / step.num_steps``.
    """

    interval: int
    window: tuple[float, float] = (0.0, 1000.0)
    unit: WindowUnit = "timestep"

    def __post_init__(self) -> None:
        if isinstance(self.interval, bool) or not isinstance(self.interval, int) or self.interval < 1:
            raise ValueError(f"broadcast interval must be an integer >= 1 (1 = never reuse), got {self.interval!r}")
        if self.unit not in ("timestep", "fraction"):
            raise ValueError(f"window unit must be 'timestep' or 'fraction', got {self.unit!r}")
        if len(self.window) != 2:
            raise ValueError(f"window must be a pair (low, high), got {self.window!r}")
        low, high = (float(v) for v in self.window)
        top = 1000.0 if self.unit == "timestep" else 1.0
        if not 0.0 <= low < high <= top:
            raise ValueError(f"{self.unit} window {self.window!r} is out of range: expected 0 <= low < high <= {top:g}")
        object.__setattr__(self, "window", (low, high))

    def contains(self, step: DenoisingStep) -> bool:
        """Whether ``step`` lies inside the window."""
        low, high = self.window
        if self.unit == "timestep":
            return low < step.timestep < high
        return low <= step.fraction < high

    def reuses(self, step: DenoisingStep) -> bool:
        """Whether the kind's cached output stands in for computing it at ``step``."""
        return step.index % self.interval != 0 and self.contains(step)

    def keeps(self, step: DenoisingStep) -> bool:
        """Whether an output computed at ``step`` may be reused later (never with ``interval == 1``)."""
        return self.interval > 1


@dataclass(frozen=True)
class MLPReuse:
    """Reuse the MLP branch output of some blocks for a few steps after chosen step positions.

    At each position in ``at`` the MLP of every listed layer is computed and kept; the
    ``steps`` following steps reuse it. ``layers`` are indices among the blocks of one self-attention
    axis (:attr:`videosys.core.BranchSite.layer`): a sequence applies to every axis the model has, a
    mapping ``{axis: layers}`` to the named axes only. ``unit="step"``: positions are step indices;
    ``unit="fraction"``: fractions of the loop, rounded to the nearest step index.
    """

    layers: Sequence[int] | Mapping[AttentionAxis | str, Sequence[int]]
    at: Sequence[int | float]
    steps: int = 2
    unit: Literal["step", "fraction"] = "step"
    _by_axis: dict[AttentionAxis | None, frozenset[int]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 1:
            raise ValueError(f"MLP reuse steps must be an integer >= 1, got {self.steps!r}")
        if self.unit not in ("step", "fraction"):
            raise ValueError(f"MLP reuse unit must be 'step' or 'fraction', got {self.unit!r}")
        if len(self.at) == 0:
            raise ValueError("MLP reuse needs at least one step position in `at`")
        for point in self.at:
            if self.unit == "step" and (isinstance(point, bool) or not isinstance(point, int) or point < 0):
                raise ValueError(f"MLP reuse position {point!r} must be a step index >= 0 (unit='step')")
            if self.unit == "fraction" and not 0.0 <= float(point) < 1.0:
                raise ValueError(f"MLP reuse position {point!r} must be a fraction in [0, 1) (unit='fraction')")
        object.__setattr__(self, "at", tuple(self.at))  # frozen: later edits to the caller's list do not leak in
        if isinstance(self.layers, Mapping):
            by_axis = {AttentionAxis.parse(axis): _layer_set(layers) for axis, layers in self.layers.items()}
            bad = [axis for axis in by_axis if axis is AttentionAxis.CROSS]
            if bad:
                raise ValueError("MLP reuse layers are counted per self-attention axis; 'cross' is not one")
        else:
            object.__setattr__(self, "layers", tuple(self.layers))
            by_axis = {None: _layer_set(self.layers)}
        object.__setattr__(self, "_by_axis", by_axis)

    def layers_for(self, axis: AttentionAxis) -> frozenset[int]:
        """The layers of blocks with self-attention ``axis`` whose MLP is reused."""
        if None in self._by_axis:
            return self._by_axis[None]
        return self._by_axis.get(axis, frozenset())

    def named_axes(self) -> tuple[AttentionAxis, ...]:
        """The axes a mapping names (empty when one layer list applies to every axis)."""
        return tuple(axis for axis in self._by_axis if axis is not None)

    def positions(self, num_steps: int) -> list[int]:
        """The step indices of ``at`` in a loop of ``num_steps``; raises if one falls outside the loop."""
        if self.unit == "fraction":
            positions = [int(float(f) * num_steps + 0.5) for f in self.at]
        else:
            positions = list(self.at)
        outside = [p for p in positions if p >= num_steps]
        if outside:
            raise ValueError(
                f"MLP reuse positions {self.at!r} ({self.unit}) give steps {positions}, but this loop has "
                f"{num_steps} steps (0..{num_steps - 1})"
            )
        return positions

    def reuses(self, step: DenoisingStep) -> bool:
        """Whether ``step`` falls in the ``steps`` steps after one of the positions (for a listed layer)."""
        return any(p < step.index <= p + self.steps for p in self.positions(step.num_steps))

    def keeps(self, step: DenoisingStep) -> bool:
        """Whether an output computed at ``step`` may be reused later: ``step`` is one of the positions."""
        return step.index in self.positions(step.num_steps)


def _layer_set(layers: Sequence[int]) -> frozenset[int]:
    for layer in layers:
        if isinstance(layer, bool) or not isinstance(layer, int) or layer < 0:
            raise ValueError(f"MLP reuse layer {layer!r} must be a block index >= 0")
    return frozenset(layers)


@dataclass(frozen=True)
class PABConfig:
    """Pyramid Attention Broadcast settings: a :class:`Broadcast` per attention kind, optional MLP reuse.

    A kind left as None is always computed. The "pyramid" is spatial < temporal < cross intervals,
    e.g. 2 / 4 / 6, since spatial attention outputs change fastest between steps.
    """

    spatial: Broadcast | None = None
    """Self-attention along S (within each frame)."""
    temporal: Broadcast | None = None
    """Self-attention along T (across frames)."""
    full: Broadcast | None = None
    """Full 3-D self-attention along T*S."""
    cross: Broadcast | None = None
    """Cross-attention to the text tokens."""
    mlp: MLPReuse | None = None
    """MLP reuse for chosen blocks at chosen step positions."""

    def __post_init__(self) -> None:
        for name in ("spatial", "temporal", "full", "cross"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, Broadcast):
                raise TypeError(f"PABConfig.{name} must be a Broadcast or None, got {type(value).__name__}")
        if self.mlp is not None and not isinstance(self.mlp, MLPReuse):
            raise TypeError(f"PABConfig.mlp must be an MLPReuse or None, got {type(self.mlp).__name__}")

    def broadcast_for(self, kind: AttentionAxis) -> Broadcast | None:
        """The rule for attention branches of ``kind``."""
        return getattr(self, kind.value)

    def check_loop(self, num_steps: int) -> None:
        """Raise if the config cannot apply to a loop of ``num_steps`` (MLP positions outside it)."""
        if self.mlp is not None:
            self.mlp.positions(num_steps)
