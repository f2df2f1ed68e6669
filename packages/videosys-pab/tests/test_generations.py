"""Caches never leak across generations, samples of a batch, or guidance halves."""

import copy
import logging

import pytest
import torch
from pab_tiny import inputs, linear_30, sample, tiny_model

from videosys.pab import Broadcast, MLPReuse, PABConfig, enable, pab

# Open-Sora 1.2's pyramid; on linear_30 the window (450, 930) holds steps 3..16.
CONFIG = PABConfig(
    spatial=Broadcast(2, window=(450, 930)),
    temporal=Broadcast(4, window=(450, 930)),
    cross=Broadcast(6, window=(450, 930)),
    mlp=MLPReuse(layers=[0], at=[5, 9], steps=2),
)


def fresh(model):
    twin = copy.deepcopy(model)
    enable(twin, CONFIG)
    return twin


# (first generation, second generation): a stopped loop leaves cached outputs behind, and a loop
# that starts at step 7 (a reuse step for spatial attention) would pick them up if they were kept.
RUNS = {
    "full-full": ({}, {}),
    "stopped-full": ({"stop": 12}, {}),
    "full-from-step-7": ({}, {"start": 7}),
    "stopped-from-step-7": ({"stop": 12}, {"start": 7}),
}


@pytest.mark.parametrize("run", list(RUNS))
def test_two_generations_in_a_row_equal_two_fresh_models(run):
    first, second = RUNS[run]
    model = tiny_model()
    one, two = fresh(model), fresh(model)
    enable(model, CONFIG)
    a = sample(model, linear_30(), seed=1, guidance="batched", **first)
    b = sample(model, linear_30(), seed=2, guidance="batched", **second)
    assert torch.equal(a, sample(one, linear_30(), seed=1, guidance="batched", **first))
    assert torch.equal(b, sample(two, linear_30(), seed=2, guidance="batched", **second))


def test_guidance_in_one_batch_equals_guidance_in_two_calls():
    model = tiny_model()
    with pab(model, CONFIG):
        batched = sample(model, linear_30(), guidance="batched")
        separate = sample(model, linear_30(), guidance="separate")
    unwrapped = sample(model, linear_30(), guidance="batched")
    torch.testing.assert_close(batched, separate, rtol=1e-5, atol=1e-5)
    assert (batched - unwrapped).abs().max() > 1e-3  # PAB changed the result: the comparison is not vacuous


def test_a_batch_equals_its_samples_one_by_one():
    model = tiny_model()
    x, text = inputs(seed=3, batch=3)
    with pab(model, CONFIG):
        together = sample(model, linear_30(), guidance="batched", given=(x, text))
        alone = [
            sample(model, linear_30(), guidance="batched", given=(x[i : i + 1], text[i : i + 1])) for i in range(3)
        ]
    torch.testing.assert_close(together, torch.cat(alone), rtol=1e-5, atol=1e-5)


def test_one_summary_line_per_generation(caplog):
    model = tiny_model()
    with caplog.at_level(logging.INFO, logger="videosys.pab"), pab(model, CONFIG):
        sample(model, linear_30(), guidance="separate")
        sample(model, linear_30(), guidance="batched")
    lines = [r.getMessage() for r in caplog.records if r.name == "videosys.pab"]
    assert len(lines) == 2
    # spatial: 7 reuse steps (3, 5, ..., 15) x 2 layers; two calls per step in the first generation
    assert "spatial 28/120 reused" in lines[0]
    assert "spatial 14/60 reused" in lines[1]
    # mlp: layer 0 of both axes (2 of the 4 MLPs) reuses on steps 6, 7, 10, 11
    assert "mlp 8/120 reused" in lines[1]
