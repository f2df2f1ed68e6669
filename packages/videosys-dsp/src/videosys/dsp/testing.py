"""Start CPU gloo ranks for tests: DSP's own, the models', and a user's model checked under DSP.

:func:`spawn` runs a function on ``world_size`` fresh processes joined in one gloo group. The usual recipe,
a TCP port picked in the parent and a ``tcp://`` rendezvous, breaks on a busy machine: the port is free when
picked, but another process can bind it before rank 0 does; rank 0 then fails (``EADDRINUSE``) while the
other ranks may join whatever store now listens there, and hang. Rank 0 also hosts that ``TCPStore``'s
server thread, so a store problem kills the whole spawn (CI saw rank 0 abort with ``terminate called
without an active exception``).

Here each call rendezvouses through a fresh file in its own temporary folder (no port, no store server in
any rank), every rank waits at a barrier before it tears its group down (no rank leaves while another
still communicates), the group has a timeout, so a rank stuck in a collective fails instead of hanging, and a
rank that succeeded exits without the interpreter's teardown, where leftover gloo state was seen to abort.
"""

from __future__ import annotations

import json
import os
import tempfile
import traceback
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from videosys.core import exit_without_finalization, leave_process_group

__all__ = ["spawn"]

TIMEOUT = timedelta(seconds=300)
"""How long a rank waits in a collective or at the rendezvous: far above any tiny test's step on a loaded
CPU, and short enough that a hang fails the test run instead of the CI job."""

FIRST_FAILURE = "first_failure.json"


def _rank(rank: int, world_size: int, folder: str, timeout: timedelta, fn: Callable[..., None], args: tuple) -> None:
    torch.set_num_threads(1)  # world_size ranks share the machine's cores: more threads only contend
    init_method = f"file://{Path(folder) / 'store'}"
    dist.init_process_group("gloo", init_method=init_method, rank=rank, world_size=world_size, timeout=timeout)
    try:
        fn(*args)
        dist.barrier()  # only on success: a failed rank must not make the others wait for it
    except BaseException:
        _record_first_failure(Path(folder), rank)
        leave_process_group()
        raise
    leave_process_group()  # what fn left in reference cycles, holding the group, goes before the group does
    exit_without_finalization(0)  # every check passed: a rank must not abort in the interpreter's teardown


def _record_first_failure(folder: Path, rank: int) -> None:
    """Keep the traceback of the first rank to fail. Its teardown makes the ranks waiting for it in a collective
    fail too, and torch.multiprocessing reports whichever failed rank it notices first: maybe one of those."""
    try:
        with open(folder / FIRST_FAILURE, "x") as file:
            json.dump({"rank": rank, "pid": os.getpid(), "traceback": traceback.format_exc()}, file)
    except FileExistsError:
        pass  # a later failure, caused by the first one's teardown or not: the first says most


def spawn(fn: Callable[..., None], world_size: int, *args: object, timeout: timedelta = TIMEOUT) -> None:
    """Run ``fn(*args)`` on ``world_size`` spawned CPU processes, each a rank of one fresh gloo group.

    ``fn`` reads its rank from ``torch.distributed.get_rank()``; it must be importable by name in a new process
    (a module-level function of a module on ``sys.path``), and ``args`` picklable. Returns when every rank
    has returned. When a rank raises, the others are stopped and ``torch.multiprocessing.ProcessRaisedException``
    carries the traceback of the first rank that failed.
    """
    if not isinstance(world_size, int) or world_size < 1:
        raise ValueError(f"world_size must be a positive int, got {world_size!r}")
    with tempfile.TemporaryDirectory(prefix="videosys-ranks-") as folder:
        try:
            mp.spawn(_rank, args=(world_size, folder, timeout, fn, args), nprocs=world_size, join=True)
        except mp.ProcessRaisedException as error:
            first_file = Path(folder) / FIRST_FAILURE
            first = json.loads(first_file.read_text()) if first_file.exists() else None
            if first is None or first["rank"] == error.error_index:
                raise
            message = f"\n\n-- Process {first['rank']} terminated with the following error:\n{first['traceback']}"
            raise mp.ProcessRaisedException(message, first["rank"], first["pid"]) from error
