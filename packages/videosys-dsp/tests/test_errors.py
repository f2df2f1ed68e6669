"""Errors raised before any process group is used (no ranks to spawn)."""

import pytest
import torch
from dsp_testing import TinyVideoDiT
from torch import nn

from videosys.core import InterfaceError
from videosys.dsp import comm_stats, parallelize, reset_comm_stats, total_bytes
from videosys.dsp.comm import record


def test_model_that_is_not_a_backbone():
    with pytest.raises(InterfaceError, match="Linear is not a videosys.core.STBackbone"):
        parallelize(nn.Linear(2, 2))


def test_unknown_mode_and_axis():
    with pytest.raises(ValueError, match="unknown sequence-parallel mode 'ring'; expected one of 'dsp'"):
        parallelize(TinyVideoDiT(), mode="ring")
    with pytest.raises(ValueError, match="resting .* axis must be 'spatial' or 'temporal', got 'full'"):
        parallelize(TinyVideoDiT(), resting_axis="full")


def test_without_torch_distributed():
    with pytest.raises(RuntimeError, match="needs torch.distributed: launch with `torchrun"):
        parallelize(TinyVideoDiT())


def test_counters_sum_bytes_per_kind():
    reset_comm_stats()
    record("switch", torch.zeros(2, 3, dtype=torch.float32))
    record("switch", torch.zeros(5, dtype=torch.bfloat16))
    record("switch.backward", torch.zeros(4, dtype=torch.float64))
    assert comm_stats() == {"switch": (2, 24 + 10), "switch.backward": (1, 32)}
    assert (total_bytes(), total_bytes(backward=True)) == (34, 32)
    reset_comm_stats()
    assert comm_stats() == {}
