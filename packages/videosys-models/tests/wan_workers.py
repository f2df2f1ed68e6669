"""A tiny Wan backbone, its inputs, and what spawned gloo ranks run in the Wan + DSP/PAB tests."""

from __future__ import annotations

import copy

import torch
import torch.distributed as dist

from videosys.core import denoising_step
from videosys.models import WAN_PAB
from videosys.models.transformers import WanTransformer

__all__ = ["dsp_matches_one_rank", "inputs", "pab_and_dsp", "sampling_outputs", "tiny_wan"]

STEPS = 8


def tiny_wan(seed: int = 0) -> WanTransformer:
    """Two blocks, 6 heads of 8 channels (Ulysses on 2 and 3 ranks; RoPE split 4/2/2), every parameter random."""
    torch.manual_seed(seed)
    model = WanTransformer(
        num_layers=2, num_heads=6, head_dim=8, in_channels=4, out_channels=4, text_dim=12, freq_dim=16, ffn_dim=40
    ).eval()
    with torch.no_grad():
        for param in model.parameters():
            param.normal_(std=0.3)
    return model


def inputs(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Latents with T = 3 frames and a 5x7 token grid (S = 35: neither divides by 2; S not by 3), two different
    timesteps, and text whose second sample is zero-padded after 3 of 6 tokens."""
    g = torch.Generator().manual_seed(seed)
    text = torch.randn(2, 6, 12, generator=g)
    text[1, 3:] = 0
    return torch.randn(2, 4, 3, 10, 14, generator=g), torch.tensor([900.0, 260.0]), text


def sampling_outputs(model: WanTransformer, steps: int = STEPS) -> list[torch.Tensor]:
    """The model's output at timesteps 999 .. 0 (``steps`` of them), each inside the denoising-step context."""
    latents, _, text = inputs()
    outputs = []
    with torch.no_grad():
        for i, t in enumerate(torch.linspace(999, 0, steps)):
            with denoising_step(i, t, steps):
                outputs.append(model(latents, t.expand(2), text))
    return outputs


def _loss(out: torch.Tensor) -> torch.Tensor:
    weights = torch.linspace(-1.0, 1.0, out.numel()).reshape(out.shape)
    return (out * weights).sum()


def dsp_matches_one_rank() -> None:
    """Forward and gradients on the ranks equal the same model run whole in this process: full attention as
    Ulysses (USP with 6 heads) sharded along S, and as a ring sharded along T."""
    import videosys.dsp as dsp

    world = dist.get_world_size()
    reference = tiny_wan().train()
    latents, t, text = inputs()
    expected = reference(latents, t, text)
    _loss(expected).backward()
    for resting, full in (("spatial", "usp"), ("temporal", "ring")):
        where = f"{world} ranks, {resting=}, {full=}"
        model = dsp.parallelize(copy.deepcopy(reference), resting_axis=resting, full_attention=full)
        model.zero_grad()
        out = model(latents, t, text)
        torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5, msg=lambda m, w=where: f"{w}: {m}")
        _loss(out).backward()
        dsp.average_gradients(model)
        for (name, param), ref in zip(model.named_parameters(), reference.parameters()):
            atol = 5e-5 * max(1.0, ref.grad.abs().max().item())  # fp32 sums over shards in another order
            torch.testing.assert_close(
                param.grad, ref.grad, rtol=1e-4, atol=atol, msg=lambda m, w=where, n=name: f"{w}, {n}: {m}"
            )


def pab_and_dsp(pab_first: bool, out: str) -> None:
    """Wan's PAB defaults on the sharded model, PAB enabled before or after DSP; rank 0 saves outputs and counters."""
    import videosys.dsp as dsp
    import videosys.pab as pab

    model = tiny_wan()
    enable = [lambda: pab.enable(model, WAN_PAB), lambda: dsp.parallelize(model)]
    for i in (0, 1) if pab_first else (1, 0):
        enable[i]()
    dsp.reset_comm_stats()
    outputs = sampling_outputs(model)
    if dist.get_rank() == 0:
        torch.save({"outputs": outputs, "stats": pab.stats(model), "ulysses": dsp.comm_stats()["ulysses"].calls}, out)
