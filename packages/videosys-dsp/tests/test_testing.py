"""``videosys.dsp.testing.spawn``: every rank runs in one group, and a failing rank's error reaches the caller."""

import pytest
import torch.multiprocessing as mp
import workers

from videosys.dsp.testing import spawn


def test_every_rank_joins_one_group(tmp_path):
    spawn(workers.report_rank, 3, str(tmp_path))
    reports = sorted(path.read_text() for path in tmp_path.glob("rank*.txt"))
    assert reports == ["0 3 6.0", "1 3 6.0", "2 3 6.0"]  # 1 + 2 + 3 summed on every rank


def test_a_rank_that_succeeded_skips_the_interpreters_teardown(tmp_path):
    """An abort at exit, after the checks passed and the group was destroyed, does not fail the spawn."""
    spawn(workers.report_rank_then_abort_at_exit, 2, str(tmp_path))
    assert sorted(path.read_text() for path in tmp_path.glob("rank*.txt")) == ["0 2 3.0", "1 2 3.0"]


def test_the_failing_rank_traceback_reaches_the_caller():
    """Rank 0, waiting in a collective rank 1 never joins, fails when rank 1 tears down; rank 1's error is reported."""
    with pytest.raises(mp.ProcessRaisedException, match="ValueError: rank 1 failed on purpose") as error:
        spawn(workers.fail_on_last_rank, 2)
    assert error.value.error_index == 1 and "fail_on_last_rank" in str(error.value)


def test_world_size_must_be_positive():
    with pytest.raises(ValueError, match="world_size must be a positive int, got 0"):
        spawn(workers.report_rank, 0, "unused")
