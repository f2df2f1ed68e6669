"""Open-Sora-Plan v1.1 under DSP (2 gloo ranks equal one, forward and gradients) and PAB (unit intervals = baseline;
over DSP = alone), on the golden fixture's weights and inputs: T = 33 and S = 15 divide by neither rank count."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from latte_workers import (
    OPENSORA_PLAN_V11,
    dsp_forward,
    opensora_plan_inputs,
    output_and_grads,
    pab_over_dsp,
    sampling_outputs,
)

from videosys.models import OPENSORA_PLAN_V11_PAB, OpenSoraPlanLatte
from videosys.models.loading import load_backbone
from videosys.pab import MLPReuse

pab = pytest.importorskip("videosys.pab")
dsp = pytest.importorskip("videosys.dsp")
spawn = pytest.importorskip("videosys.dsp.testing").spawn

FOLDER = OPENSORA_PLAN_V11 / "transformer"


def load() -> OpenSoraPlanLatte:
    return load_backbone(OpenSoraPlanLatte, FOLDER)


@pytest.mark.parametrize("resting_axis", ["spatial", "temporal"])
def test_dsp_on_two_ranks_equals_one(tmp_path, resting_axis):
    """Sharding S, or T (the original placement: the temporal table gets each shard's offset); gradients averaged
    over the ranks equal the single-process ones."""
    expected, expected_grads = output_and_grads(load(), opensora_plan_inputs)
    out = tmp_path / "rank0.pt"
    spawn(dsp_forward, 2, str(FOLDER), str(out), resting_axis, OpenSoraPlanLatte, opensora_plan_inputs, True)
    output, grads = torch.load(out)
    torch.testing.assert_close(output, expected, rtol=1e-5, atol=1e-5)
    assert grads.keys() == expected_grads.keys()
    for name, grad in grads.items():
        scale = max(1.0, expected_grads[name].abs().max().item())
        torch.testing.assert_close(grad, expected_grads[name], rtol=1e-5, atol=1e-5 * scale, msg=name)


def _unit_intervals():
    kinds = ("spatial", "temporal", "cross")
    ones = {kind: dataclasses.replace(getattr(OPENSORA_PLAN_V11_PAB, kind), interval=1) for kind in kinds}
    return dataclasses.replace(OPENSORA_PLAN_V11_PAB, mlp=None, **ones)


def test_pab_with_unit_intervals_equals_the_baseline():
    baseline = sampling_outputs(load(), make_inputs=opensora_plan_inputs)
    model = load()
    pab.enable(model, _unit_intervals())
    for got, expected in zip(sampling_outputs(model, make_inputs=opensora_plan_inputs), baseline):
        torch.testing.assert_close(got, expected, rtol=0, atol=0)


def test_pab_over_dsp_equals_pab_alone(tmp_path):
    """The release's defaults, MLP reuse on the tiny model's layer 0, reuse every kind on 2 ranks as on one;
    frames rest sharded (the original's placement), so temporal attention, reused most, switches."""
    config = dataclasses.replace(
        OPENSORA_PLAN_V11_PAB, mlp=MLPReuse((0,), at=OPENSORA_PLAN_V11_PAB.mlp.at, unit="fraction")
    )
    single = load()
    pab.enable(single, config)
    expected = sampling_outputs(single, make_inputs=opensora_plan_inputs)
    stats = pab.stats(single)
    assert all(stats[kind]["reused"] > 0 for kind in ("spatial", "temporal", "cross", "mlp"))

    out = tmp_path / "rank0.pt"
    args = (str(FOLDER), str(out), config, 6, True, OpenSoraPlanLatte, opensora_plan_inputs, "temporal")
    spawn(pab_over_dsp, 2, *args)
    result = torch.load(out)
    for got, want in zip(result["outputs"], expected):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    assert result["stats"] == stats
    assert not result["left"]  # disabling both leaves no instance attribute behind
