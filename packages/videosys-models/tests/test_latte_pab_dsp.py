"""Latte under the VideoSys accelerations: PAB with every interval 1 equals no PAB; DSP on 2 gloo ranks equals 1.

These need videosys-pab / videosys-dsp with their public entry points (``enable`` + ``PABConfig``,
``parallelize``) and skip, naming what is missing, when those packages are absent.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
from latte_workers import dsp_forward, inputs, sampling_outputs

from videosys.models import LATTE_PAB
from videosys.models.loading import load_backbone
from videosys.models.transformers import LatteTransformer


def _require(module_name: str, *names: str):
    module = pytest.importorskip(module_name)
    missing = [name for name in names if not hasattr(module, name)]
    if missing:
        pytest.skip(f"{module_name} does not provide {', '.join(missing)} yet")
    return module


def test_pab_with_unit_intervals_equals_baseline(latte_reference):
    pab = _require("videosys.pab", "enable", "PABConfig")
    _, folder = latte_reference
    baseline = sampling_outputs(load_backbone(LatteTransformer, folder))
    ones = dataclasses.replace(
        LATTE_PAB,
        spatial=dataclasses.replace(LATTE_PAB.spatial, interval=1),
        temporal=dataclasses.replace(LATTE_PAB.temporal, interval=1),
        cross=dataclasses.replace(LATTE_PAB.cross, interval=1),
        mlp=None,
    )
    model = load_backbone(LatteTransformer, folder)
    pab.enable(model, ones)
    for got, expected in zip(sampling_outputs(model), baseline):
        torch.testing.assert_close(got, expected, rtol=0, atol=0)


@pytest.mark.parametrize("resting_axis", ["spatial", "temporal"])
def test_dsp_on_two_ranks_equals_one(latte_reference, tmp_path, resting_axis):
    """Sharding S (default) or T (Latte's original placement: the temporal position table gets offsets)."""
    _require("videosys.dsp", "parallelize")
    spawn = _require("videosys.dsp.testing", "spawn").spawn
    _, folder = latte_reference
    latents, text = inputs()
    with torch.no_grad():
        expected = load_backbone(LatteTransformer, folder)(latents, torch.tensor([500, 500]), text)
    out = tmp_path / "rank0.pt"
    spawn(dsp_forward, 2, str(folder), str(out), resting_axis)
    torch.testing.assert_close(torch.load(out), expected, rtol=0, atol=1e-5)
