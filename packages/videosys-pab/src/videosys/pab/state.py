"""Per-model PAB state: which generation is running, and how many branch calls were computed or reused.

Every cached branch reports to one :class:`PABState`. It notices a new generation from the
denoising-step context (step index 0, or a step that does not move forward), clears every cache then,
and logs one summary line per generation.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING

from videosys.core import DenoisingStep

from .config import PABConfig

if TYPE_CHECKING:
    from .cache import BranchCache

__all__ = ["PABState"]

logger = logging.getLogger("videosys.pab")

KINDS = ("spatial", "temporal", "full", "cross", "mlp")
"""Statistics keys, in reporting order: the attention kinds by axis name, then the MLP."""


def _zero(kinds: Iterable[str]) -> dict[str, dict[str, int]]:
    return {kind: {"computed": 0, "reused": 0} for kind in kinds}


class PABState:
    """Generation tracking, statistics and the caches of one model with PAB enabled."""

    def __init__(self, config: PABConfig, kinds: Iterable[str]) -> None:
        self.config = config
        self.caches: list[BranchCache] = []
        present = set(kinds)
        ordered = [kind for kind in KINDS if kind in present]
        self.totals = _zero(ordered)
        self.generation = _zero(ordered)
        self.step: DenoisingStep | None = None
        self.calls_this_step = 0
        self.calls_last_step = 0
        self.summary_pending = False

    def observe(self, step: DenoisingStep) -> None:
        """Called before every cached branch call inside a step; starts a new generation when one begins."""
        if step == self.step:
            return
        previous = self.step
        if previous is None or step.index <= previous.index or step.num_steps != previous.num_steps:
            self.config.check_loop(step.num_steps)  # raises before any state changes
            self.finish_generation()
            for cache in self.caches:
                cache.clear()
            self.generation = _zero(self.generation)
            self.calls_last_step = 0
        else:
            self.calls_last_step = self.calls_this_step
        self.step = step
        self.calls_this_step = 0

    def record(self, kind: str, reused: bool, step: DenoisingStep) -> None:
        """Count one branch call; log the summary once the final step has made as many calls as the one before."""
        outcome = "reused" if reused else "computed"
        self.totals[kind][outcome] += 1
        self.generation[kind][outcome] += 1
        self.summary_pending = True
        self.calls_this_step += 1
        if step.index == step.num_steps - 1 and self.calls_this_step == self.calls_last_step:
            self.finish_generation()

    def finish_generation(self) -> None:
        """Log the running generation's summary if it has not been logged yet."""
        if not self.summary_pending:
            return
        self.summary_pending = False
        steps = self.step.num_steps if self.step is not None else 0
        logger.info("PAB generation of %d steps: %s", steps, describe(self.generation))


def describe(counts: dict[str, dict[str, int]]) -> str:
    """``"spatial 14/28 reused, cross 20/56 reused; 30.9% of branch calls reused"``."""
    parts = [f"{kind} {c['reused']}/{c['reused'] + c['computed']} reused" for kind, c in counts.items()]
    reused = sum(c["reused"] for c in counts.values())
    calls = sum(c["reused"] + c["computed"] for c in counts.values())
    share = 100.0 * reused / calls if calls else 0.0
    return f"{', '.join(parts)}; {share:.1f}% of branch calls reused"
