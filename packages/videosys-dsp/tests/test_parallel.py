"""Multi-rank tests on CPU (gloo): DSP and Ulysses against the same model run in one process."""

import pytest
import workers
from dsp_testing import run_ranks

WORLD_SIZES = [2, 4]


@pytest.mark.parametrize("world_size", WORLD_SIZES)
def test_collectives_round_trip_exactly(world_size):
    run_ranks(world_size, workers.collectives_round_trip)


@pytest.mark.parametrize("world_size", WORLD_SIZES)
def test_spatial_temporal_backbone_matches_single_process(world_size):
    run_ranks(world_size, workers.backbone_matches_single_process, False)


@pytest.mark.parametrize("world_size", WORLD_SIZES)
def test_full_attention_backbone_matches_single_process(world_size):
    run_ranks(world_size, workers.backbone_matches_single_process, True)


@pytest.mark.parametrize("world_size", WORLD_SIZES)
def test_bytes_match_closed_form(world_size):
    run_ranks(world_size, workers.bytes_match_closed_form)


def test_errors_are_clear():
    run_ranks(2, workers.errors_are_clear)


def test_subgroup_of_a_data_parallel_mesh():
    run_ranks(4, workers.subgroup_of_a_mesh)
