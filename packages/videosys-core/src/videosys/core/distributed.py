"""Ending a torch.distributed run without an abort at interpreter exit.

A gloo (or NCCL) process group runs collectives on its own threads, and a worker thread frees a finished
collective's tensors *after* the caller has moved on; freeing a tensor that Python created needs the GIL. If the
group outlives the program, because something still references it when the interpreter finalizes (typically a
reference cycle through a model whose modules DSP patched with the group), a worker that reaches that point
during finalization is killed inside a C++ destructor, and the process aborts with SIGABRT ("terminate called
without an active exception") after the run has succeeded. :func:`leave_process_group` collects those cycles
first, so destroying the group drops its last reference and the group's destructor joins its threads while the
interpreter is still whole.

Some holders are out of Python's reach: torch's ``DistributedDataParallel`` keeps its group alive from C++ after
the module is gone. A command that ran one ends with :func:`exit_without_finalization` once its work is written.
"""

from __future__ import annotations

import gc
import logging
import os
import sys
from typing import NoReturn

import torch.distributed as dist

__all__ = ["exit_without_finalization", "leave_process_group"]


def leave_process_group() -> None:
    """Destroy every process group of this process and let their communication threads end now.

    Call it once the run's objects that hold a group (a parallelized model, its pipeline, a trainer) are out of
    scope: cycles among them are collected here; a plain reference that is still alive keeps its group's threads
    running until it goes. A no-op when torch.distributed is not initialised.
    """
    if not (dist.is_available() and dist.is_initialized()):
        return
    gc.collect()
    dist.destroy_process_group()


def exit_without_finalization(code: int) -> NoReturn:
    """End the process with ``code`` after flushing standard output, standard error and logging, skipping the
    interpreter's finalization (and ``atexit`` handlers), where a process group that outlived
    :func:`leave_process_group` can abort a finished run. Only for a command whose work is written and closed."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
