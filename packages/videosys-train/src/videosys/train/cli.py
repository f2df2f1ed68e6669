"""``videosys-train CONFIG.yaml [--override key=value ...] [--resume latest|FOLDER]``.

Run it plainly for one process, or under ``torchrun --nproc-per-node N`` (or many nodes) for data
and sequence parallelism. ``videosys-train --tiny`` trains the packaged tiny config.
"""

from __future__ import annotations

import argparse
import os
import sys
from importlib import resources
from pathlib import Path

from .config import ConfigError, load_config

__all__ = ["TINY_CONFIG", "main"]

TINY_CONFIG = resources.files("videosys.train") / "configs" / "tiny.yaml"


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


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if (args.config is None) == (not args.tiny):
        _parser().error("give either a CONFIG file or --tiny")
    try:
        if args.tiny:  # outputs and generated data under the working directory, unless overridden
            defaults = ["output_dir=outputs/tiny", "data.csv=outputs/tiny/data/data.csv"]
            with resources.as_file(TINY_CONFIG) as tiny:
                config = load_config(tiny, [*defaults, *args.override])
        else:
            config = load_config(Path(args.config), args.override)
        from .trainer import Trainer

        result = Trainer(config).fit(args.resume)
    except ConfigError as err:
        print(f"videosys-train: config error: {err}", file=sys.stderr)
        return 2
    if result.checkpoint is not None and int(os.environ.get("RANK", "0")) == 0:
        print(f"trained to step {result.global_step}; last checkpoint {result.checkpoint}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
