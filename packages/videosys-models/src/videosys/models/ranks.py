"""The ranks of a ``torchrun ... -m videosys.models generate --dsp`` run: who writes and how errors end every rank.

Each phase of a run (load, generate, write) ends with :meth:`Ranks.agree`: every rank shares the error it
hit, if any, so all ranks stop together and rank 0 prints the first message once, instead of one rank
failing while the others wait in a collective.
"""

from __future__ import annotations

import contextlib
import os
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch

from videosys.core import leave_process_group

__all__ = ["RankError", "Ranks", "ranks"]


class RankError(RuntimeError):
    """Some rank failed in a phase; carries that rank's message (every rank raises it)."""

    reported = False
    """Set once rank 0 has printed it (the ranks then exit without printing again)."""


@dataclass(frozen=True)
class Ranks:
    """This process's place among the ranks (rank 0 of 1 without ``--dsp``)."""

    rank: int = 0
    world: int = 1

    @property
    def is_writer(self) -> bool:
        return self.rank == 0

    def agree(self, error: BaseException | None) -> None:
        """Raise :class:`RankError` on every rank if any rank passes an error (a collective: call it on all)."""
        if self.world == 1:
            if error is not None:
                raise error
            return
        import torch.distributed as dist

        messages: list[str | None] = [None] * self.world
        dist.all_gather_object(messages, None if error is None else _describe(error))
        failed = [(rank, m) for rank, m in enumerate(messages) if m is not None]
        if failed:
            rank, message = failed[0]
            raise RankError(f"rank {rank}: {message}") from error


def _describe(error: BaseException) -> str:
    return str(error) or type(error).__name__


@contextlib.contextmanager
def ranks(enabled: bool, device: torch.device, report: Callable[[str], None]) -> Iterator[tuple[Ranks, torch.device]]:
    """Join the torchrun process group when ``enabled`` (gloo on CPU, NCCL on CUDA; one GPU per local rank).

    A :class:`RankError` is ``report``-ed by rank 0, and no rank leaves before that (torchrun stops the
    remaining ranks as soon as one exits with an error). The group is left with
    :func:`videosys.core.leave_process_group`, so the run's objects must not outlive the ``with`` block in the
    caller's frame: keep them in a function called inside it. An error's traceback would keep them too, so its
    finished frames are cleared.
    """
    if not enabled:
        yield Ranks(), device
        return
    import torch.distributed as dist

    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    group = Ranks(dist.get_rank(), dist.get_world_size())
    try:
        yield group, device
    except BaseException as error:
        if isinstance(error, RankError):
            if group.is_writer:
                report(str(error))
            error.reported = True
            dist.barrier()
        _clear_finished_frames(error)
        raise
    finally:
        leave_process_group()


def _clear_finished_frames(error: BaseException) -> None:
    """Drop the locals of the finished frames in ``error``'s tracebacks (its causes' too): they hold the run's
    objects, and so the process group, past :func:`leave_process_group`. Line numbers stay for printing."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        traceback.clear_frames(current.__traceback__)
        current = current.__cause__ or current.__context__
