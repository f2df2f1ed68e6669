"""Byte accounting for every collective the package issues.

Each collective records, on the rank that runs it, the size of the tensor this rank passes in:
``numel * element_size`` of its local input (padding included, since it is moved too). That is the
volume the closed forms of the DSP paper count: an all-to-all of a local shard of ``M/N`` elements
counts ``M/N``, the final all-gather of a shard counts ``M/N`` (its own shard, sent to the others).
Forward collectives are recorded under their kind (``"switch"``, ``"ulysses"``, ``"gather"``); the
collectives run by autograd in backward under ``"<kind>.backward"`` (``"split.backward"`` is the
all-gather of gradients behind a split, which moves nothing forward).
"""

from __future__ import annotations

from typing import NamedTuple

import torch

__all__ = ["CommCount", "comm_stats", "record", "reset_comm_stats", "total_bytes"]


class CommCount(NamedTuple):
    """How many collectives of one kind ran on this rank and how many bytes it passed into them."""

    calls: int
    bytes: int


_counts: dict[str, CommCount] = {}


def record(kind: str, tensor: torch.Tensor) -> None:
    """Count one collective of ``kind`` whose local input is ``tensor``."""
    calls, sent = _counts.get(kind, CommCount(0, 0))
    _counts[kind] = CommCount(calls + 1, sent + tensor.numel() * tensor.element_size())


def comm_stats() -> dict[str, CommCount]:
    """A snapshot of this rank's counters since the last :func:`reset_comm_stats`, keyed by kind."""
    return dict(_counts)


def reset_comm_stats() -> None:
    """Zero every counter (call before the step you want to measure)."""
    _counts.clear()


def total_bytes(stats: dict[str, CommCount] | None = None, *, backward: bool = False) -> int:
    """Bytes of the forward collectives in ``stats`` (default: the current counters), or of the backward ones."""
    stats = comm_stats() if stats is None else stats
    return sum(count.bytes for kind, count in stats.items() if kind.endswith(".backward") == backward)
