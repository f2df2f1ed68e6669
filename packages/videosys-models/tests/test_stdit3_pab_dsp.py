"""STDiT3 under DSP (2 and 3 gloo ranks equal one) and PAB (unit intervals = baseline; over DSP = alone)."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from stdit3_workers import dsp_matches_one_rank, pab_over_dsp, sampling_outputs, tiny_stdit3

from videosys.models import OPENSORA_PAB
from videosys.pab import MLPReuse

pab = pytest.importorskip("videosys.pab")
dsp = pytest.importorskip("videosys.dsp")
spawn = pytest.importorskip("videosys.dsp.testing").spawn


@pytest.mark.parametrize("world", [2, 3])
def test_dsp_equals_one_rank_in_every_mode_and_resting_axis(world):
    """T = 5 and S = 35 divide by neither 2 nor 3; x_mask puts some frames of each sample at t0."""
    spawn(dsp_matches_one_rank, world)


def test_pab_with_unit_intervals_equals_the_baseline():
    baseline = sampling_outputs(tiny_stdit3())
    kinds = ("spatial", "temporal", "cross")
    ones = {kind: dataclasses.replace(getattr(OPENSORA_PAB, kind), interval=1) for kind in kinds}
    model = tiny_stdit3()
    pab.enable(model, dataclasses.replace(OPENSORA_PAB, mlp=None, **ones))
    for got, expected in zip(sampling_outputs(model), baseline):
        torch.testing.assert_close(got, expected, rtol=0, atol=0)


@pytest.mark.parametrize("resting_axis", ["spatial", "temporal"])
def test_pab_over_dsp_equals_pab_alone(resting_axis, tmp_path):
    """Open-Sora's defaults (MLP reuse on the tiny model's layer 0) on 2 ranks equal them on one process."""
    config = dataclasses.replace(OPENSORA_PAB, mlp=MLPReuse((0,), at=OPENSORA_PAB.mlp.at, unit="fraction"))
    single = tiny_stdit3()
    pab.enable(single, config)
    expected = sampling_outputs(single)
    stats = pab.stats(single)
    assert stats["spatial"]["reused"] > 0 and stats["temporal"]["reused"] > 0 and stats["mlp"]["reused"] > 0

    out = tmp_path / "rank0.pt"
    spawn(pab_over_dsp, 2, config, resting_axis, str(out))
    result = torch.load(out)
    for got, want in zip(result["outputs"], expected):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    assert result["stats"] == stats
