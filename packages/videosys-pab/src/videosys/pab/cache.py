"""The broadcast cache around one :class:`~videosys.core.Branch`.

PAB installs a :class:`BranchCache` as a wrapper of the branch's ``forward`` (:mod:`videosys.core.patching`,
at the ``CACHE`` level, outside any sequence-parallel wrapper); the module keeps its type, parameters and
state-dict keys, so the backbone still passes :func:`~videosys.core.check_backbone`, and removing the
wrapper restores the branch exactly. The cached unit is the branch output (after output projection and
gate): a reused branch runs none of its code, including any sequence-parallel collectives inside it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from videosys.core import Branch, DenoisingStep, current_step
from videosys.core.patching import MethodPatch, Nesting, method_wrappers, wrap_method

from .state import PABState

__all__ = ["BranchCache", "ReuseRule"]

logger = logging.getLogger("videosys.pab")


class ReuseRule(Protocol):
    """When a branch returns its cached output: :class:`~videosys.pab.Broadcast` or :class:`~videosys.pab.MLPReuse`."""

    def reuses(self, step: DenoisingStep) -> bool: ...

    def keeps(self, step: DenoisingStep) -> bool: ...


Signature = tuple[Any, ...]
BranchOutput = torch.Tensor | tuple[torch.Tensor, ...]
"""A branch's update: one tensor, or one per stream for a :class:`~videosys.core.JointBranch` (video, text)."""


def _signature(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Signature:
    """Shapes, dtypes and devices of a call's tensor arguments: a cached output only answers a matching call."""

    def describe(value: Any) -> Any:
        if isinstance(value, torch.Tensor):
            return (tuple(value.shape), value.dtype, value.device)
        return None if value is None else type(value)

    return (*map(describe, args), *((k, describe(v)) for k, v in kwargs.items()))


def _detached(output: BranchOutput) -> BranchOutput:
    return tuple(o.detach() for o in output) if isinstance(output, tuple) else output.detach()


@dataclass
class _Entry:
    signature: Signature
    output: BranchOutput


class BranchCache:
    """Decides per call whether ``branch`` runs or returns its cached output.

    Entries are keyed by the call's position within the step (the n-th call of this branch in the
    step), so a pipeline that calls the model several times per step (separate conditional and
    unconditional passes) never mixes their outputs; a guidance batch passed as one call is cached as
    it flows. Kept outputs are detached. Outside a denoising-step context the branch always computes
    and nothing is recorded.
    """

    def __init__(self, branch: Branch, kind: str, rule: ReuseRule | None, state: PABState) -> None:
        self.branch = branch
        self.kind = kind
        self.rule = rule
        self.state = state
        self.entries: dict[int, _Entry] = {}
        self.step: DenoisingStep | None = None
        self.position = -1
        self.patch: MethodPatch | None = None

    def install(self) -> None:
        """Route the branch's calls through this cache."""
        if any(isinstance(wrapper, BranchCache) for wrapper in method_wrappers(self.branch, "forward")):
            raise RuntimeError(
                f"this {type(self.branch).__name__} already has PAB installed (a branch shared between blocks, "
                "or a model enabled twice)"
            )
        self.patch = wrap_method(self.branch, "forward", self, Nesting.CACHE)

    def uninstall(self) -> None:
        """Take this cache off the branch's ``forward`` and drop every cached tensor."""
        if self.patch is not None:
            self.patch.remove()
            self.patch = None
        self.clear()

    def clear(self) -> None:
        """Drop the cached outputs (a new generation starts)."""
        self.entries.clear()
        self.step = None
        self.position = -1

    def __call__(self, compute: Callable[..., BranchOutput], *args: Any, **kwargs: Any) -> BranchOutput:
        """One call of the branch; ``compute`` runs it (the next wrapper in, or the branch's own forward)."""
        step = current_step()
        if step is None:
            return compute(*args, **kwargs)
        self.state.observe(step)
        if step != self.step:
            self.step, self.position = step, 0
        else:
            self.position += 1
        signature = _signature(args, kwargs)
        entry = self.entries.get(self.position)
        reuse = self.rule is not None and entry is not None and self.rule.reuses(step)
        if reuse and entry.signature != signature:
            logger.debug("PAB %s branch: call differs from the cached one (%s); recomputing", self.kind, signature)
            reuse = False
        if reuse:
            output = entry.output
        else:
            output = compute(*args, **kwargs)
            if self.rule is not None and self.rule.keeps(step):
                self.entries[self.position] = _Entry(signature, _detached(output))
            else:
                self.entries.pop(self.position, None)
        if step.index == step.num_steps - 1:  # no later step can reuse: free the memory now
            self.entries.pop(self.position, None)
        self.state.record(self.kind, reuse, step)
        return output

