"""Multi-rank tests on CPU (gloo): DSP, Ulysses, ring and USP against the same model run in one process.

Starting ranks dominates the run time, so each world size spawns once and runs every check in turn, under
each attention backend (``dsp_testing.BACKENDS``); each test below reports its own check.
"""

import importlib.util

import pytest
import workers
from dsp_testing import BACKENDS, Check, run_checks

from videosys.dsp import MODES

HAS_PAB = importlib.util.find_spec("videosys.pab") is not None

COMMON = [
    Check("round_trip", workers.collectives_round_trip, backends=("sdpa",)),  # no attention
    Check("spatial_temporal", workers.backbone_matches_single_process, (False,)),
    Check("full", workers.backbone_matches_single_process, (True,)),
    Check("masked", workers.masked_attention_matches_single_process),
    Check("token_conditioning", workers.token_conditioning_matches_single_process),
    Check("bytes", workers.bytes_match_closed_form),
    Check("ring_attention", workers.ring_attention_matches_one_process),
    Check("full_ring", workers.backbone_matches_single_process, (True, 4, {"full_attention": "ring"})),
]
CHECKS = {
    2: [
        *COMMON,
        # 3 heads on 2 ranks: Ulysses cannot split them; USP picks a ring of 2.
        Check("full_usp_odd_heads", workers.backbone_matches_single_process, (True, 3)),
        Check("masked_usp_odd_heads", workers.masked_attention_matches_single_process, (3, ("dsp",))),
        Check("train_usp", workers.usp_training_follows_single_process, (3,)),
        Check("padding_rule", workers.padding_rule_is_load_bearing, backends=("math",)),
        Check("errors", workers.errors_are_clear),
        # Ulysses (2 heads on 2 ranks) and a ring of 2 for FULL attention.
        Check("grid_rope", workers.grid_rope_matches_single_process, (2, ({}, {"full_attention": "ring"}))),
        Check("grid_rope_ring_place", workers.ring_shards_need_their_place, backends=("sdpa",)),
        *([Check("pab_over_usp", workers.pab_over_usp_equals_pab_alone)] if HAS_PAB else []),
        Check("joint", workers.joint_attention_matches_single_process, (2,)),
        *([Check("pab_over_joint", workers.pab_over_joint_attention_equals_pab_alone)] if HAS_PAB else []),
    ],
    3: [
        Check("joint", workers.joint_attention_matches_single_process, (3,)),
        Check("joint_heads", workers.joint_attention_needs_heads_dividing_ranks, backends=("sdpa",)),
        Check("ring_attention", workers.ring_attention_matches_one_process),
        Check("full_usp_odd_heads", workers.backbone_matches_single_process, (True, 4)),  # 4 heads: a ring of 3
        Check("masked_usp_odd_heads", workers.masked_attention_matches_single_process, (4, ("dsp",))),
        Check("grid_rope", workers.grid_rope_matches_single_process, (2, ({},), ("dsp",))),  # 2 heads: a ring of 3
    ],
    4: [
        *COMMON,
        # 6 heads on 4 ranks: Ulysses 2 x ring 2.
        Check("full_usp_odd_heads", workers.backbone_matches_single_process, (True, 6)),
        Check("full_usp_float64", workers.in_float64, (workers.backbone_matches_single_process, True, 6), ("math",)),
        Check("masked_usp_odd_heads", workers.masked_attention_matches_single_process, (6, ("dsp",))),
        Check("train_usp", workers.usp_training_follows_single_process, (6,)),
        Check("mesh", workers.subgroup_of_a_mesh),
        Check("joint", workers.joint_attention_matches_single_process, (4,)),
        # 4 heads: Ulysses, a ring of 4, and USP as Ulysses 2 x ring 2.
        Check(  # (3, 2, 3) pads both axes on 4 ranks
            "grid_rope",
            workers.grid_rope_matches_single_process,
            (4, ({}, {"full_attention": "ring"}, {"ulysses_size": 2}), MODES, workers.GRIDS[:1]),
        ),
    ],
}


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    return {size: run_checks(size, checks, tmp_path_factory.mktemp(f"world{size}")) for size, checks in CHECKS.items()}


def check(results, world_size, name, backend="sdpa"):
    error = results[world_size][f"{name}[{backend}]"]
    assert error is None, f"check {name!r} on {world_size} ranks under {backend!r} attention failed:\n{error}"


@pytest.mark.parametrize("world_size", [2, 4])
def test_collectives_round_trip_exactly(results, world_size):
    check(results, world_size, "round_trip")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("world_size", [2, 4])
def test_spatial_temporal_backbone_matches_single_process(results, world_size, backend):
    check(results, world_size, "spatial_temporal", backend)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("world_size", [2, 4])
def test_full_attention_backbone_matches_single_process(results, world_size, backend):
    check(results, world_size, "full", backend)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("world_size", [2, 4])
def test_masked_attention_matches_single_process(results, world_size, backend):
    check(results, world_size, "masked", backend)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("world_size", [2, 4])
def test_token_conditioning_matches_single_process(results, world_size, backend):
    check(results, world_size, "token_conditioning", backend)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("world_size", [2, 4])
def test_bytes_match_closed_form(results, world_size, backend):
    check(results, world_size, "bytes", backend)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("world_size", [2, 3, 4])
def test_ring_attention_matches_one_process_in_every_precision(results, world_size, backend):
    check(results, world_size, "ring_attention", backend)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("world_size", [2, 4])
def test_full_attention_as_a_pure_ring_matches_single_process(results, world_size, backend):
    check(results, world_size, "full_ring", backend)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("world_size", [2, 3, 4])
def test_usp_with_heads_ulysses_cannot_split_matches_single_process(results, world_size, backend):
    check(results, world_size, "full_usp_odd_heads", backend)
    check(results, world_size, "masked_usp_odd_heads", backend)


def test_usp_is_exact_in_float64(results):
    check(results, 4, "full_usp_float64", "math")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("world_size", [2, 4])
def test_usp_training_follows_single_process_losses(results, world_size, backend):
    check(results, world_size, "train_usp", backend)


def test_breaking_the_padding_rule_fails_under_math_attention(results):
    check(results, 2, "padding_rule", "math")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("world_size", [2, 3, 4])
def test_grid_rope_under_ulysses_ring_and_usp_matches_single_process(results, world_size, backend):
    check(results, world_size, "grid_rope", backend)


def test_ring_shards_rotated_from_the_origin_fail_the_grid_rope_check(results):
    check(results, 2, "grid_rope_ring_place")


@pytest.mark.parametrize("backend", BACKENDS)
def test_errors_are_clear(results, backend):
    check(results, 2, "errors", backend)


@pytest.mark.skipif(not HAS_PAB, reason="videosys-pab is not installed")
@pytest.mark.parametrize("backend", BACKENDS)
def test_pab_over_usp_equals_pab_alone(results, backend):
    check(results, 2, "pab_over_usp", backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_subgroup_of_a_data_parallel_mesh(results, backend):
    check(results, 4, "mesh", backend)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("world_size", [2, 3, 4])
def test_a_users_joint_text_video_model_matches_single_process(results, world_size, backend):
    check(results, world_size, "joint", backend)


def test_joint_attention_names_heads_that_do_not_divide_the_ranks(results):
    check(results, 3, "joint_heads")


@pytest.mark.skipif(not HAS_PAB, reason="videosys-pab is not installed")
@pytest.mark.parametrize("backend", BACKENDS)
def test_pab_over_joint_attention_equals_pab_alone(results, backend):
    check(results, 2, "pab_over_joint", backend)
