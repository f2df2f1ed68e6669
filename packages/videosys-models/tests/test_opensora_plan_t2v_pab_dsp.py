"""Open-Sora-Plan v1.2 under DSP (2 gloo ranks equal one, forward and gradients) and PAB (its published defaults;
unit intervals = baseline; over DSP = alone)."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from opensora_plan_t2v_workers import dsp_matches_one_rank, model, pab_over_dsp, sampling_outputs

from videosys.core import AttentionAxis, DenoisingStep
from videosys.models import OPENSORA_PLAN_V12_PAB

pab = pytest.importorskip("videosys.pab")
dsp = pytest.importorskip("videosys.dsp")
spawn = pytest.importorskip("videosys.dsp.testing").spawn


def test_pab_defaults_match_the_published_ones():
    """REFERENCES (VideoSys's Open-Sora-Plan v1.2 row): full 2 and cross 6 on timesteps (100, 850); nothing else."""
    config = OPENSORA_PLAN_V12_PAB
    assert config.spatial is None and config.temporal is None and config.mlp is None
    timesteps = list(range(990, -1, -10))  # a 100-step loop, as Open-Sora-Plan v1.2 samples
    for kind, interval in ((AttentionAxis.FULL, 2), (AttentionAxis.CROSS, 6)):
        rule = config.broadcast_for(kind)
        assert (rule.interval, rule.window, rule.unit) == (interval, (100.0, 850.0), "timestep")
        reused = [i for i, t in enumerate(timesteps) if rule.reuses(DenoisingStep(i, t, 100))]
        assert reused == [i for i, t in enumerate(timesteps) if 100 < t < 850 and i % interval], kind


def test_dsp_on_two_ranks_equals_one_with_gradients():
    """Both resting axes (T = 3 and S = 35 are padded), every mode (full attention always runs Ulysses), with the
    fixture's video and text masks."""
    spawn(dsp_matches_one_rank, 2)


def test_pab_with_unit_intervals_equals_the_baseline():
    baseline = sampling_outputs(model())
    net = model()
    ones = {kind: dataclasses.replace(getattr(OPENSORA_PLAN_V12_PAB, kind), interval=1) for kind in ("full", "cross")}
    pab.enable(net, dataclasses.replace(OPENSORA_PLAN_V12_PAB, **ones))
    for got, expected in zip(sampling_outputs(net), baseline):
        torch.testing.assert_close(got, expected, rtol=0, atol=0)


def test_pab_over_dsp_equals_pab_alone(tmp_path):
    single = model()
    pab.enable(single, OPENSORA_PLAN_V12_PAB)
    expected = sampling_outputs(single)
    stats = pab.stats(single)
    assert stats["full"]["reused"] > 0 and stats["cross"]["reused"] > 0

    out = tmp_path / "rank0.pt"
    spawn(pab_over_dsp, 2, OPENSORA_PLAN_V12_PAB, str(out))
    result = torch.load(out)
    for got, want in zip(result["outputs"], expected):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    assert result["stats"] == stats
    computed = len(single.blocks) * len(expected) - stats["full"]["reused"]  # full attentions actually run
    assert result["ulysses"] == 4 * computed  # a reused branch skips its all-to-alls (q, k, v, out)
