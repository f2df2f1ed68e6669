"""Shared helpers: a tiny training config on a small synthetic data set."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

try:
    from videosys.train.config import TrainConfig, load_config
except ImportError:  # another package's session (e.g. `nox -s gpu`) collecting this folder without videosys-train
    collect_ignore_glob = ["test_*.py"]

torch.set_num_threads(1)  # the CI machine has 2 cores and multi-rank tests run 2 processes


def tiny_config(root: Path, *overrides: str) -> TrainConfig:
    """The packaged tiny config (Latte) shrunk further: 8 clips of 8 frames, 8x8 pixels, one block pair."""
    from videosys.train.cli import TINY_CONFIG

    base = [
        f"output_dir={root / 'out'}",
        f"data.csv={root / 'data' / 'data.csv'}",
        "data.synthetic.num_videos=8",
        "data.synthetic.frames=8",
        "data.synthetic.size=8",
        "data.num_frames=4",
        "data.frame_interval=2",
        "data.size=8",
        "model.kwargs={num_layers: 1, num_heads: 2, head_dim: 16, patch_size: 2}",
        "train.batch_size=2",
        "train.steps=4",
        "optim.warmup_steps=2",
        "checkpoint.every=2",
        "checkpoint.keep=5",
    ]
    return load_config(TINY_CONFIG, [*base, *overrides])


@pytest.fixture(scope="session")
def tiny():
    """``tiny(root, *overrides)``: :func:`tiny_config` for tests that pick their own folders."""
    return tiny_config


@pytest.fixture(scope="session")
def torchrun() -> list[str]:
    """The command that starts 2 local ranks. ``--standalone``: torchrun binds its rendezvous store on a port the
    kernel picks and keeps it open for the ranks to join; a port picked here in advance could be taken first."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2"]


@pytest.fixture
def make_config(tmp_path):
    return lambda *overrides: tiny_config(tmp_path, *overrides)


@pytest.fixture(scope="session")
def tiny_vae():
    """``tiny_vae(diffusers)``: a small random ``AutoencoderKL`` (4 latent channels, 2x downsampling)."""

    def build(diffusers):
        torch.manual_seed(0)
        return diffusers.AutoencoderKL(
            in_channels=3,
            out_channels=3,
            down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
            up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
            block_out_channels=(8, 16),
            latent_channels=4,
            norm_num_groups=4,
            layers_per_block=1,
        )

    return build
