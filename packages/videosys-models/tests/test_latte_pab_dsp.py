"""Latte under the VideoSys accelerations: PAB with every interval 1 equals no PAB; DSP on 2 gloo ranks equals 1.

These need videosys-pab / videosys-dsp with their public entry points (``enable`` + ``PABConfig``,
``parallelize``) and skip, naming what is missing, until those packages provide them.
"""

from __future__ import annotations

import dataclasses
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from videosys.core import denoising_step
from videosys.models import LATTE_PAB
from videosys.models.loading import load_backbone
from videosys.models.transformers import LatteTransformer


def _require(module_name: str, *names: str):
    module = pytest.importorskip(module_name)
    missing = [name for name in names if not hasattr(module, name)]
    if missing:
        pytest.skip(f"{module_name} does not provide {', '.join(missing)} yet")
    return module


def _inputs(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(2, 4, 4, 8, 8, generator=g), torch.randn(2, 6, 32, generator=g)


def _loop(model, steps: int = 6) -> list[torch.Tensor]:
    latents, text = _inputs()
    outputs = []
    with torch.no_grad():
        for i, t in enumerate(torch.linspace(999, 0, steps).long()):
            with denoising_step(i, t, steps):
                outputs.append(model(latents, t.expand(2), text))
    return outputs


def test_pab_with_unit_intervals_equals_baseline(latte_reference):
    pab = _require("videosys.pab", "enable", "PABConfig")
    _, folder = latte_reference
    baseline = _loop(load_backbone(LatteTransformer, folder))
    ones = dataclasses.replace(
        LATTE_PAB,
        spatial=dataclasses.replace(LATTE_PAB.spatial, interval=1),
        temporal=dataclasses.replace(LATTE_PAB.temporal, interval=1),
        cross=dataclasses.replace(LATTE_PAB.cross, interval=1),
        mlp=None,
    )
    model = load_backbone(LatteTransformer, folder)
    pab.enable(model, ones.to_pab_config())
    for got, expected in zip(_loop(model), baseline):
        torch.testing.assert_close(got, expected, rtol=0, atol=0)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _dsp_worker(rank: int, world: int, port: int, folder: str, out: str, resting_axis: str) -> None:
    import videosys.dsp as dsp

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        model = load_backbone(LatteTransformer, folder)
        dsp.parallelize(model, resting_axis=resting_axis)
        latents, text = _inputs()
        with torch.no_grad():
            result = model(latents, torch.tensor([500, 500]), text)
        if rank == 0:
            torch.save(result, out)
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("resting_axis", ["spatial", "temporal"])
def test_dsp_on_two_ranks_equals_one(latte_reference, tmp_path, resting_axis):
    """Sharding S (default) or T (Latte's original placement: the temporal position table gets offsets)."""
    _require("videosys.dsp", "parallelize")
    _, folder = latte_reference
    latents, text = _inputs()
    with torch.no_grad():
        expected = load_backbone(LatteTransformer, folder)(latents, torch.tensor([500, 500]), text)
    out = tmp_path / "rank0.pt"
    mp.spawn(_dsp_worker, args=(2, _free_port(), str(folder), str(out), resting_axis), nprocs=2, join=True)
    torch.testing.assert_close(torch.load(out), expected, rtol=0, atol=1e-5)
