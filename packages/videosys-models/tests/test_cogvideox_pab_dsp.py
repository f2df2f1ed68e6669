"""CogVideoX under DSP and PAB: 2 and 3 gloo ranks equal one process (forward, gradients); PAB with interval 1
equals no PAB; PAB over DSP equals PAB alone, whichever is applied first; heads must divide the ranks."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from cogvideox_tiny import TINY_5B_DSP, save_reference
from cogvideox_workers import forward_and_grads, sampling_outputs, sharded_checks

from videosys.models import COGVIDEOX_PAB
from videosys.models.loading import load_backbone
from videosys.models.transformers import CogVideoXTransformer

diffusers = pytest.importorskip("diffusers")
if not hasattr(diffusers, "CogVideoXTransformer3DModel"):
    pytest.skip(f"diffusers {diffusers.__version__} lacks CogVideoX (0.30+)", allow_module_level=True)
pab = pytest.importorskip("videosys.pab")
dsp = pytest.importorskip("videosys.dsp")
spawn = pytest.importorskip("videosys.dsp.testing").spawn


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("cogvideox") / "transformer"
    save_reference(root, TINY_5B_DSP, seed=2)
    return root


def test_pab_with_interval_one_equals_baseline(folder):
    baseline = sampling_outputs(load_backbone(CogVideoXTransformer, folder))
    model = load_backbone(CogVideoXTransformer, folder)
    pab.enable(model, dataclasses.replace(COGVIDEOX_PAB, full=dataclasses.replace(COGVIDEOX_PAB.full, interval=1)))
    for got, expected in zip(sampling_outputs(model), baseline):
        torch.testing.assert_close(got, expected, rtol=0, atol=0)


@pytest.mark.parametrize("world", [2, 3])
def test_dsp_and_pab_on_ranks_equal_one_process(folder, tmp_path, world):
    single = forward_and_grads(load_backbone(CogVideoXTransformer, folder))
    pab_model = load_backbone(CogVideoXTransformer, folder)
    pab.enable(pab_model, COGVIDEOX_PAB)
    pab_alone = sampling_outputs(pab_model)
    pab_stats = pab.stats(pab_model)
    assert pab_stats["full"]["reused"] == 3 * len(pab_model.blocks)  # odd steps 1, 3, 5 lie in the window

    out = tmp_path / "rank0.pt"
    spawn(sharded_checks, world, str(folder), str(out), COGVIDEOX_PAB)
    result = torch.load(out)
    for resting in ("spatial", "temporal"):
        torch.testing.assert_close(result[resting]["out"], single["out"], rtol=1e-5, atol=1e-5)
        for name, grad in single["grads"].items():
            scale = max(1.0, grad.abs().max().item())
            torch.testing.assert_close(
                result[resting]["grads"][name], grad, rtol=1e-5, atol=1e-5 * scale, msg=f"{resting}: {name}"
            )
    for pab_first in (True, False):
        run = result[f"pab_first={pab_first}"]
        assert run["stats"] == pab_stats
        for got, expected in zip(run["outputs"], pab_alone):
            torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    assert f"{world + 1} heads" in result["heads_error"]
