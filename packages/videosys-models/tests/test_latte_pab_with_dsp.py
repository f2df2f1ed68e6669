"""PAB and DSP together on Latte: 2 gloo ranks equal single-process PAB, and reused branches skip their switches."""

from __future__ import annotations

import dataclasses
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from videosys.core import AttentionAxis, branch_sites, denoising_step
from videosys.models import LATTE_PAB
from videosys.models.loading import load_backbone
from videosys.models.transformers import LatteTransformer

pab = pytest.importorskip("videosys.pab")
dsp = pytest.importorskip("videosys.dsp")

STEPS = 6
# Latte-1's attention schedule; its MLP reuse names layers 0-4, which the 2-layer test model lacks.
CONFIG = dataclasses.replace(LATTE_PAB, mlp=None)


def _loop(model) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    latents, text = torch.randn(2, 4, 4, 8, 8, generator=g), torch.randn(2, 6, 32, generator=g)
    outputs = []
    with torch.no_grad():
        for i, t in enumerate(torch.linspace(999, 0, STEPS).long()):
            with denoising_step(i, t, STEPS):
                outputs.append(model(latents, t.expand(2), text))
    return outputs


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, folder: str, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        model = load_backbone(LatteTransformer, folder)
        pab.enable(model, CONFIG.to_pab_config())
        dsp.parallelize(model, resting_axis="spatial")
        dsp.reset_comm_stats()
        outputs = _loop(model)
        if rank == 0:
            torch.save(
                {"outputs": outputs, "switches": dsp.comm_stats()["switch"].calls, "stats": pab.stats(model)}, out
            )
    finally:
        dist.destroy_process_group()


def test_pab_over_dsp_equals_single_process_pab_and_skips_switches(latte_reference, tmp_path):
    _, folder = latte_reference
    single = load_backbone(LatteTransformer, folder)
    pab.enable(single, CONFIG.to_pab_config())
    expected = _loop(single)
    spatial_layers = sum(1 for s in branch_sites(single) if s.name == "attn" and s.block_axis is AttentionAxis.SPATIAL)

    out = tmp_path / "rank0.pt"
    mp.spawn(_worker, args=(2, _free_port(), str(folder), str(out)), nprocs=2, join=True)
    result = torch.load(out)
    for got, want in zip(result["outputs"], expected):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-5)

    # Spatial attention rests on the sharded axis: each computed call switches in and out, a reused one not at all.
    # Timesteps 999, 799, 599, 399, 199, 0: inside Latte's (100, 800) window are steps 1-4; interval 2 reuses 1 and 3.
    computed_per_layer = STEPS - 2
    assert result["stats"]["spatial"] == {"computed": computed_per_layer * spatial_layers, "reused": 2 * spatial_layers}
    assert result["switches"] == 2 * computed_per_layer * spatial_layers
