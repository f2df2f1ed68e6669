"""``videosys-train CONFIG.yaml [--override key=value ...] [--resume latest|FOLDER]``.

Run it plainly for one process, or under ``torchrun --nproc-per-node N`` (or many nodes) for data
and sequence parallelism. ``videosys-train --tiny`` trains the packaged tiny config (a small Latte on
generated moving shapes). A config that cannot run ends every rank with one line, printed by rank 0,
and exit status 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import NoReturn

from .checkpoint import resolve_resume
from .config import ConfigError, TrainConfig, load_config, validate

__all__ = ["CONFIGS", "TINY_CONFIG", "entry_point", "main", "run_tool"]

CONFIGS = resources.files("videosys.train") / "configs"
"""The packaged configs: ``tiny.yaml`` (Latte, CPU), ``dit_tiny.yaml`` (DiT, CPU), ``dit_xl2_imagenet256.yaml``."""
TINY_CONFIG = CONFIGS / "tiny.yaml"


def run_tool(prog: str, make: Callable[[], Path]) -> int:
    """Run a single-process tool that writes ``make()``'s path: a :class:`ConfigError` is one line and status 2."""
    try:
        path = make()
    except ConfigError as err:
        print(f"{prog}: {err}", file=sys.stderr)
        return 2
    print(f"wrote {path}")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="videosys-train", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("config", nargs="?", help="YAML config file (omit with --tiny)")
    parser.add_argument("--tiny", action="store_true", help="use the packaged tiny config (synthetic shapes data)")
    parser.add_argument(
        "--override", "-o", nargs="+", action="extend", default=[], metavar="KEY=VALUE", help="e.g. train.steps=10"
    )
    parser.add_argument("--resume", metavar="latest|FOLDER", help="continue from a checkpoint")
    return parser


def _config(args: argparse.Namespace) -> TrainConfig:
    if args.tiny:  # outputs and generated data under the working directory, unless overridden
        defaults = ["output_dir=outputs/tiny", "data.csv=outputs/tiny/data/data.csv"]
        with resources.as_file(TINY_CONFIG) as tiny:
            return load_config(tiny, [*defaults, *args.override])
    return load_config(Path(args.config), args.override)


def _agreed(error: str | None) -> str | None:
    """The first error any rank hit (None if none): every rank learns it, so all stop together and rank 0 tells."""
    import torch.distributed as dist

    errors: list[str | None] = [None] * dist.get_world_size()
    dist.all_gather_object(errors, error)
    rank, first = next(((r, e) for r, e in enumerate(errors) if e is not None), (0, None))
    return first if rank == 0 or first is None else f"rank {rank}: {first}"


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if (args.config is None) == (not args.tiny):
        _parser().error("give either a CONFIG file or --tiny")
    import torch
    import torch.distributed as dist

    from videosys.core import leave_process_group

    from .trainer import Trainer, init_distributed

    owns_group = init_distributed()
    is_main = dist.get_rank() == 0
    try:
        error = None
        try:  # everything that can fail without a model, checked on every rank before any rank builds one
            config = _config(args)
            resume = resolve_resume(config.checkpoint_dir, args.resume)
            validate(config, dist.get_world_size(), "cuda" if torch.cuda.is_available() else "cpu")
        except ConfigError as err:
            error = str(err)
        error = _agreed(error)
        if error is None:
            try:
                result = Trainer(config).fit(resume)
            except ConfigError as err:  # found once the data is read: raised on every rank alike
                error = str(err)
    finally:
        if owns_group:
            leave_process_group()
    if error is not None:
        if is_main:
            print(f"videosys-train: config error: {error}", file=sys.stderr)
        return 2
    if result.checkpoint is not None and is_main:
        print(f"trained to step {result.global_step}; last checkpoint {result.checkpoint}")
    return 0


def entry_point() -> NoReturn:
    """The ``videosys-train`` command: :func:`main`, then an exit that skips the interpreter's finalization.

    The trainer's ``DistributedDataParallel`` keeps the process group alive from C++ after the group is left, and
    a gloo worker thread still freeing the last collective's tensors when the interpreter finalizes aborts a
    finished run (SIGABRT). Everything the run writes is closed by then.
    """
    from videosys.core import exit_without_finalization

    exit_without_finalization(main())


if __name__ == "__main__":
    entry_point()
