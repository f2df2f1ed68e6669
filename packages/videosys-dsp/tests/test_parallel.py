"""Multi-rank tests on CPU (gloo): DSP and Ulysses against the same model run in one process.

Starting ranks dominates the run time, so each world size spawns once and runs every check in turn;
each test below reports its own check.
"""

import pytest
import workers
from dsp_testing import run_checks

COMMON = [
    ("round_trip", workers.collectives_round_trip, ()),
    ("spatial_temporal", workers.backbone_matches_single_process, (False,)),
    ("full", workers.backbone_matches_single_process, (True,)),
    ("masked", workers.masked_attention_matches_single_process, ()),
    ("token_conditioning", workers.token_conditioning_matches_single_process, ()),
    ("bytes", workers.bytes_match_closed_form, ()),
]
CHECKS = {
    2: [*COMMON, ("errors", workers.errors_are_clear, ())],
    4: [*COMMON, ("mesh", workers.subgroup_of_a_mesh, ())],
}


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    return {size: run_checks(size, checks, tmp_path_factory.mktemp(f"world{size}")) for size, checks in CHECKS.items()}


def check(results, world_size, name):
    error = results[world_size][name]
    assert error is None, f"check {name!r} on {world_size} ranks failed:\n{error}"


@pytest.mark.parametrize("world_size", [2, 4])
def test_collectives_round_trip_exactly(results, world_size):
    check(results, world_size, "round_trip")


@pytest.mark.parametrize("world_size", [2, 4])
def test_spatial_temporal_backbone_matches_single_process(results, world_size):
    check(results, world_size, "spatial_temporal")


@pytest.mark.parametrize("world_size", [2, 4])
def test_full_attention_backbone_matches_single_process(results, world_size):
    check(results, world_size, "full")


@pytest.mark.parametrize("world_size", [2, 4])
def test_masked_attention_matches_single_process(results, world_size):
    check(results, world_size, "masked")


@pytest.mark.parametrize("world_size", [2, 4])
def test_token_conditioning_matches_single_process(results, world_size):
    check(results, world_size, "token_conditioning")


@pytest.mark.parametrize("world_size", [2, 4])
def test_bytes_match_closed_form(results, world_size):
    check(results, world_size, "bytes")


def test_errors_are_clear(results):
    check(results, 2, "errors")


def test_subgroup_of_a_data_parallel_mesh(results):
    check(results, 4, "mesh")
