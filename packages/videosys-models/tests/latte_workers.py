"""What spawned gloo ranks run in the Latte + DSP/PAB tests (spawned processes import it by module name)."""

from __future__ import annotations

import socket

import torch
import torch.distributed as dist

from videosys.core import denoising_step
from videosys.models.loading import load_backbone
from videosys.models.transformers import LatteTransformer


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def inputs(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Latents (B=2, C=4, T=4, 8, 8) and caption features (2, 6, 32) for the tiny Latte."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(2, 4, 4, 8, 8, generator=g), torch.randn(2, 6, 32, generator=g)


def sampling_outputs(model, steps: int = 6) -> list[torch.Tensor]:
    """The model's output at each of ``steps`` timesteps from 999 to 0, each inside the denoising-step context."""
    latents, text = inputs()
    outputs = []
    with torch.no_grad():
        for i, t in enumerate(torch.linspace(999, 0, steps).long()):
            with denoising_step(i, t, steps):
                outputs.append(model(latents, t.expand(2), text))
    return outputs


def dsp_forward(rank: int, world: int, port: int, folder: str, out: str, resting_axis: str) -> None:
    """One forward of the Latte in ``folder`` sharded over ``world`` ranks; rank 0 saves the output."""
    import videosys.dsp as dsp

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        model = load_backbone(LatteTransformer, folder)
        dsp.parallelize(model, resting_axis=resting_axis)
        latents, text = inputs()
        with torch.no_grad():
            result = model(latents, torch.tensor([500, 500]), text)
        if rank == 0:
            torch.save(result, out)
    finally:
        dist.destroy_process_group()


def pab_over_dsp(
    rank: int, world: int, port: int, folder: str, out: str, config, steps: int, pab_first: bool = True
) -> None:
    """A PAB sampling loop on the sharded Latte, PAB enabled before or after DSP and removed in the same order.

    Rank 0 saves the outputs, switch calls, PAB counters and the instance attributes left on any module.
    """
    import videosys.dsp as dsp
    import videosys.pab as pab

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        model = load_backbone(LatteTransformer, folder)
        clean = {name: dict(vars(module)) for name, module in model.named_modules()}
        steps_on = [lambda: pab.enable(model, config), lambda: dsp.parallelize(model, resting_axis="spatial")]
        steps_off = [lambda: pab.disable(model), lambda: dsp.deparallelize(model)]
        order = [0, 1] if pab_first else [1, 0]
        for i in order:
            steps_on[i]()
        dsp.reset_comm_stats()
        outputs = sampling_outputs(model, steps)
        stats = pab.stats(model)
        for i in order:
            steps_off[i]()
        left = {
            f"{name}.{key}"
            for name, module in model.named_modules()
            for key in vars(module).keys() - clean[name].keys()
        }
        if rank == 0:
            torch.save(
                {"outputs": outputs, "switches": dsp.comm_stats()["switch"].calls, "stats": stats, "left": left}, out
            )
    finally:
        dist.destroy_process_group()
