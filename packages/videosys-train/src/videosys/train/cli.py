"""``videosys-train CONFIG.yaml [--override key=value ...] [--resume latest|FOLDER]``.

Run it plainly for one process, or under ``torchrun --nproc-per-node N`` (or many nodes) for data
and sequence parallelism. ``videosys-train --tiny`` trains the packaged tiny config (a small Latte on
generated moving shapes). A config that cannot run ends every rank with one line, printed by rank 0,
and exit status 2.
"""

from __future__ import annotations

import argparse
import os
import sys
from importlib import resources
from pathlib import Path

from .checkpoint import resolve_resume
from .config import ConfigError, TrainConfig, load_config

__all__ = ["CONFIGS", "TINY_CONFIG", "main"]

CONFIGS = resources.files("videosys.train") / "configs"
"""The packaged configs: ``tiny.yaml`` (Latte, CPU), ``dit_tiny.yaml`` (DiT, CPU), ``dit_xl2_imagenet256.yaml``."""
TINY_CONFIG = CONFIGS / "tiny.yaml"


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


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if (args.config is None) == (not args.tiny):
        _parser().error("give either a CONFIG file or --tiny")
    is_main = int(os.environ.get("RANK", "0")) == 0
    try:
        config = _config(args)
        resume = resolve_resume(config.checkpoint_dir, args.resume)  # every rank sees the same files
        from .trainer import Trainer

        result = Trainer(config).fit(resume)
    except ConfigError as err:
        if is_main:
            print(f"videosys-train: config error: {err}", file=sys.stderr)
        return 2
    if result.checkpoint is not None and is_main:
        print(f"trained to step {result.global_step}; last checkpoint {result.checkpoint}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
