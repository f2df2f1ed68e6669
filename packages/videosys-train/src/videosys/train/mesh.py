"""The data-parallel x sequence-parallel layout of the ranks.

Ranks ``[k * sp, (k + 1) * sp)`` form sequence-parallel group ``k`` (they share one batch and shard
each sample's tokens with DSP); the ``k``-th rank of every SP group forms a data-parallel group.
Neighbouring ranks (usually one node) thus carry the all-to-all traffic.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.distributed as dist

__all__ = ["ParallelMesh"]


@dataclass
class ParallelMesh:
    world_size: int
    rank: int
    sp_size: int
    sp_group: dist.ProcessGroup | None = None
    """This rank's SP group (None when ``sp_size == 1``)."""

    @property
    def dp_size(self) -> int:
        return self.world_size // self.sp_size

    @property
    def dp_rank(self) -> int:
        return self.rank // self.sp_size

    @property
    def sp_rank(self) -> int:
        return self.rank % self.sp_size

    @classmethod
    def build(cls, sp_size: int) -> ParallelMesh:
        """The mesh of the current process group (a single rank when torch.distributed is not initialised)."""
        if not dist.is_available() or not dist.is_initialized():
            if sp_size != 1:
                raise ValueError(f"sp_size={sp_size} needs torch.distributed with {sp_size} or more ranks")
            return cls(1, 0, 1)
        world, rank = dist.get_world_size(), dist.get_rank()
        if world % sp_size:
            raise ValueError(f"sp_size={sp_size} does not divide the world size {world}")
        mesh = cls(world, rank, sp_size)
        if sp_size > 1:
            for k in range(world // sp_size):  # every rank creates every group, in the same order
                group = dist.new_group(list(range(k * sp_size, (k + 1) * sp_size)))
                if k == mesh.dp_rank:
                    mesh.sp_group = group
        return mesh
