"""Wan under DSP (2 and 3 gloo ranks equal one, forward and gradients) and PAB (unit intervals = baseline;
over DSP, in either order, = PAB alone)."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from wan_workers import STEPS, dsp_matches_one_rank, pab_and_dsp, sampling_outputs, tiny_wan

from videosys.models import WAN_PAB

pab = pytest.importorskip("videosys.pab")
dsp = pytest.importorskip("videosys.dsp")
spawn = pytest.importorskip("videosys.dsp.testing").spawn


@pytest.mark.parametrize("world", [2, 3])
def test_dsp_equals_one_rank_forward_and_gradients(world):
    spawn(dsp_matches_one_rank, world)


def test_pab_with_unit_intervals_equals_the_baseline():
    baseline = sampling_outputs(tiny_wan())
    model = tiny_wan()
    ones = {kind: dataclasses.replace(getattr(WAN_PAB, kind), interval=1) for kind in ("full", "cross")}
    pab.enable(model, dataclasses.replace(WAN_PAB, **ones))
    for got, expected in zip(sampling_outputs(model), baseline):
        torch.testing.assert_close(got, expected, rtol=0, atol=0)


def test_pab_defaults_reuse_in_their_window():
    """Timesteps 999, 856, 714, 571, 428, 285, 142, 0: inside (100, 850) are steps 2-6; full attention (every 2)
    reuses at steps 3 and 5, cross-attention (every 6) at 2, 3, 4, 5 (step 6 is a multiple of 6), per block."""
    model = tiny_wan()
    pab.enable(model, WAN_PAB)
    outputs = sampling_outputs(model)
    stats = pab.stats(model)
    assert stats["full"] == {"computed": 2 * (STEPS - 2), "reused": 2 * 2}
    assert stats["cross"] == {"computed": 2 * (STEPS - 4), "reused": 2 * 4}
    baseline = sampling_outputs(tiny_wan())
    assert not torch.equal(outputs[3], baseline[3])  # a reused step differs from computing it


@pytest.mark.parametrize("pab_first", [True, False], ids=["pab-then-dsp", "dsp-then-pab"])
def test_pab_over_dsp_equals_pab_alone_in_either_order(tmp_path, pab_first):
    single = tiny_wan()
    pab.enable(single, WAN_PAB)
    expected = sampling_outputs(single)
    out = tmp_path / "rank0.pt"
    spawn(pab_and_dsp, 2, pab_first, str(out))
    result = torch.load(out)
    for got, want in zip(result["outputs"], expected):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    assert result["stats"] == pab.stats(single)
    # Ulysses around full attention: q, k, v in and the output back, only in the steps that compute it.
    assert result["ulysses"] == 4 * pab.stats(single)["full"]["computed"]
