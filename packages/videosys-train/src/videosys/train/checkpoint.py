"""Atomic checkpoint folders: written under a temporary name, flushed to disk, then renamed.

A folder named ``epoch{E}-global_step{G}`` is only ever created by a rename of a folder whose files
are all on disk, so a process killed mid-save leaves at worst a ``.tmp-*`` folder that nothing loads.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

__all__ = [
    "RUNNING_STATES",
    "checkpoint_name",
    "fsync_tree",
    "latest_checkpoint",
    "list_checkpoints",
    "load_rng_state",
    "prune_checkpoints",
    "resolve_resume",
    "rng_state",
    "write_atomically",
]

RUNNING_STATES = "running_states.json"
_NAME = re.compile(r"^epoch(\d+)-global_step(\d+)$")


def checkpoint_name(epoch: int, global_step: int) -> str:
    return f"epoch{epoch}-global_step{global_step}"


def list_checkpoints(root: str | os.PathLike) -> list[Path]:
    """Complete checkpoints under ``root``, oldest first (temporary folders are ignored)."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = [
        (int(m.group(2)), p) for p in root.iterdir() if (m := _NAME.match(p.name)) and (p / RUNNING_STATES).is_file()
    ]
    return [p for _, p in sorted(found)]


def latest_checkpoint(root: str | os.PathLike) -> Path | None:
    checkpoints = list_checkpoints(root)
    return checkpoints[-1] if checkpoints else None


def fsync_tree(path: Path) -> None:
    """Flush every file and folder under ``path`` (and ``path`` itself) to disk."""
    for folder, _, files in os.walk(path):
        for name in files:
            fd = os.open(os.path.join(folder, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        _fsync_dir(Path(folder))


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def write_atomically(root: str | os.PathLike, name: str, write: Callable[[Path], None], is_main: bool) -> Path:
    """Run ``write(tmp_folder)`` on every rank, then publish the folder as ``root/name`` in one rename.

    Collective: every rank calls it. If ``write`` raises, ``root/name`` is not created (a stale
    ``.tmp-`` folder is removed by the next save).
    """
    root = Path(root)
    final, tmp = root / name, root / f".tmp-{name}"
    if is_main:
        root.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
    _barrier()
    write(tmp)
    _barrier()
    if is_main:
        fsync_tree(tmp)
        if final.exists():  # re-saving the same step: move the old one out of the way first
            old = root / f".old-{name}"
            shutil.rmtree(old, ignore_errors=True)
            final.rename(old)
            tmp.rename(final)
            shutil.rmtree(old)
        else:
            tmp.rename(final)
        _fsync_dir(root)
    _barrier()
    return final


def resolve_resume(root: str | os.PathLike, resume: str | os.PathLike | None) -> Path | None:
    """The checkpoint ``--resume`` names (``latest`` under ``root``, or a folder), None for a fresh run.

    Raises :class:`~videosys.train.config.ConfigError` when there is none, before anything is built.
    """
    from .config import ConfigError

    if resume is None:
        return None
    if str(resume) == "latest":
        path = latest_checkpoint(root)
        if path is None:
            raise ConfigError(
                f"--resume latest: no complete checkpoint under {root}; train without --resume to start a new run"
            )
        return path
    path = Path(resume)
    if not (path / RUNNING_STATES).is_file():
        found = [p.name for p in list_checkpoints(root)]
        raise ConfigError(f"--resume {path}: not a complete checkpoint folder (no {RUNNING_STATES}); found: {found}")
    return path


def prune_checkpoints(root: str | os.PathLike, keep: int) -> None:
    """Delete all but the newest ``keep`` complete checkpoints, and leftover temporary folders."""
    root = Path(root)
    for old in list_checkpoints(root)[:-keep] if keep > 0 else []:
        shutil.rmtree(old)
    for stale in root.glob(".tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)


def rng_state() -> dict[str, Any]:
    """This process's Python, NumPy and torch (CPU and CUDA) random states."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def load_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def write_json(path: Path, value: dict[str, Any]) -> None:
    path.write_text(json.dumps(value, indent=2, sort_keys=True))
