"""A batch sampler that can restart mid-epoch and gives each sample a seed of its own."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Sampler

__all__ = ["ResumableBatchSampler", "sample_seed", "stream_seed"]

_MIX = 1_000_003


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """The seed of one sample's random draws (frame offset, timestep, noise) in one epoch."""
    return ((seed * _MIX + epoch) * _MIX + index) % (2**63 - 1)


def stream_seed(seed: int, stream: int) -> int:
    """A seed for draw ``stream`` of one sample (flip, label dropout), independent of its timestep-and-noise draws."""
    return (seed * _MIX + stream + 1) % (2**63 - 1)


class ResumableBatchSampler(Sampler[list[tuple[int, int]]]):
    """Batches of ``(index, sample_seed)`` for one data-parallel rank, from a seeded per-epoch shuffle.

    Each step takes the next ``batch_size * dp_size`` indices of the epoch's permutation; rank ``r``
    gets the ``r``-th slice of ``batch_size``. So ``dp_size`` ranks together see exactly the batches
    one rank sees with ``batch_size * dp_size``, and sequence-parallel ranks (same ``dp_rank``) see the
    same batch. :meth:`set_position` restarts at any ``(epoch, step)``; the incomplete tail is dropped.
    """

    def __init__(self, num_samples: int, batch_size: int, seed: int = 0, dp_rank: int = 0, dp_size: int = 1) -> None:
        if not 0 <= dp_rank < dp_size:
            raise ValueError(f"dp_rank {dp_rank} is outside 0..{dp_size - 1}")
        self.num_samples = num_samples
        self.batch_size = batch_size
        self.seed = seed
        self.dp_rank = dp_rank
        self.dp_size = dp_size
        self.epoch = 0
        self.start_step = 0
        if self.steps_per_epoch == 0:
            raise ValueError(
                f"{num_samples} samples do not fill one global batch of {batch_size} x {dp_size} ranks; "
                "add data or lower batch_size"
            )

    @property
    def steps_per_epoch(self) -> int:
        return self.num_samples // (self.batch_size * self.dp_size)

    def set_position(self, epoch: int, step: int = 0) -> None:
        """Iterate epoch ``epoch`` from its step ``step`` on."""
        self.epoch, self.start_step = epoch, step

    def __len__(self) -> int:
        return self.steps_per_epoch - self.start_step

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        order = torch.randperm(self.num_samples, generator=torch.Generator().manual_seed(self.seed + self.epoch))
        global_batch = self.batch_size * self.dp_size
        for step in range(self.start_step, self.steps_per_epoch):
            first = step * global_batch + self.dp_rank * self.batch_size
            indices = order[first : first + self.batch_size].tolist()
            yield [(i, sample_seed(self.seed, self.epoch, i)) for i in indices]
