"""PAB and DSP together on Latte: 2 gloo ranks equal single-process PAB, and reused branches skip their switches."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from latte_workers import pab_over_dsp, sampling_outputs

from videosys.core import AttentionAxis, branch_sites
from videosys.models import LATTE_PAB
from videosys.models.loading import load_backbone
from videosys.models.transformers import LatteTransformer

pab = pytest.importorskip("videosys.pab")
dsp = pytest.importorskip("videosys.dsp")
spawn = pytest.importorskip("videosys.dsp.testing").spawn

STEPS = 6
# Latte-1's attention schedule; its MLP reuse names layers 0-4, which the 2-layer test model lacks.
CONFIG = dataclasses.replace(LATTE_PAB, mlp=None)


@pytest.mark.parametrize("pab_first", [True, False], ids=["pab-then-dsp", "dsp-then-pab"])
def test_pab_over_dsp_equals_single_process_pab_and_skips_switches(latte_reference, tmp_path, pab_first):
    """Either order of enabling gives the same nesting (the cache outside the switches) and removes cleanly."""
    _, folder = latte_reference
    single = load_backbone(LatteTransformer, folder)
    pab.enable(single, CONFIG)
    expected = sampling_outputs(single, STEPS)
    spatial_layers = sum(1 for s in branch_sites(single) if s.name == "attn" and s.block_axis is AttentionAxis.SPATIAL)

    out = tmp_path / "rank0.pt"
    spawn(pab_over_dsp, 2, str(folder), str(out), CONFIG, STEPS, pab_first)
    result = torch.load(out)
    for got, want in zip(result["outputs"], expected):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-5)

    # Spatial attention rests on the sharded axis: each computed call switches in and out, a reused one not at all.
    # Timesteps 999, 799, 599, 399, 199, 0: inside Latte's (100, 800) window are steps 1-4; interval 2 reuses 1 and 3.
    computed_per_layer = STEPS - 2
    assert result["stats"]["spatial"] == {"computed": computed_per_layer * spatial_layers, "reused": 2 * spatial_layers}
    assert result["switches"] == 2 * computed_per_layer * spatial_layers
    assert result["left"] == set(), "removing PAB and DSP left instance attributes behind"
