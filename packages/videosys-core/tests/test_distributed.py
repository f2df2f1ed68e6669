"""leave_process_group: a group held by a reference cycle is destroyed, and its threads end, before it returns;
exit_without_finalization: output flushed, finalization skipped."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import pytest
import torch.distributed as dist

from videosys.core import leave_process_group

pytestmark = pytest.mark.skipif(not dist.is_available(), reason="torch built without torch.distributed")


def native_threads() -> int:
    """Threads of this process that Python did not start (gloo's workers and its transport loop among them)."""
    return len(os.listdir("/proc/self/task")) - threading.active_count()


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="counts threads through /proc (Linux)")
def test_a_group_held_by_a_cycle_is_gone_with_its_threads():
    before = native_threads()
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    try:
        holder: dict = {"group": dist.group.WORLD}
        holder["self"] = holder  # what a parallelized model's patched modules look like to the collector
        gathered = [None]
        dist.all_gather_object(gathered, "done")
        assert native_threads() > before, "a gloo group was expected to run threads of its own"
        del holder
    finally:
        leave_process_group()
    assert not dist.is_initialized()
    assert native_threads() == before


def test_without_a_group_it_does_nothing():
    assert not dist.is_initialized()
    leave_process_group()  # no "Default process group has not been initialized" error
    assert not dist.is_initialized()


def test_exit_without_finalization_flushes_output_and_skips_atexit():
    program = (
        "import atexit\n"
        "from videosys.core import exit_without_finalization\n"
        "atexit.register(print, 'finalized')\n"
        "print('work done', end='')\n"  # block-buffered into a pipe: lost unless flushed
        "exit_without_finalization(3)\n"
    )
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=120)
    assert (done.returncode, done.stdout) == (3, "work done"), done.stderr
