"""The golden Open-Sora-Plan v1.2 model, its inputs, and what spawned gloo ranks run in its DSP/PAB tests."""

from __future__ import annotations

import copy
from pathlib import Path

import stdit3_workers
import torch
import torch.distributed as dist
from safetensors.torch import load_file

from videosys.models import OpenSoraPlanT2V, load_backbone

__all__ = ["dsp_matches_one_rank", "inputs", "model", "pab_over_dsp", "sampling_outputs"]

FIXTURE = Path(__file__).parent / "fixtures" / "opensora_plan" / "v1.2"
TOL = {"rtol": 1e-5, "atol": 1e-5}


def model() -> OpenSoraPlanT2V:
    """The golden fixture's model: 2 layers, 2 heads (Ulysses on 2 ranks), every parameter random."""
    return load_backbone(OpenSoraPlanT2V, FIXTURE / "transformer")


def inputs() -> dict:
    """The fixture's inputs: batch 2, a 3 x 5 x 7 token grid (T and S = 35 odd: padded on 2 ranks), text and video
    masks with padding."""
    io = load_file(FIXTURE / "io.safetensors")
    return {
        "latents": io["hidden_states"],
        "timestep": io["timestep"],
        "encoder_hidden_states": io["encoder_hidden_states"],
        "encoder_attention_mask": io["encoder_attention_mask"],
        "attention_mask": io["attention_mask"],
    }


def sampling_outputs(net: OpenSoraPlanT2V) -> list[torch.Tensor]:
    """The output at timesteps 1000, 900, ..., 500 on the fixture's inputs, each inside the denoising-step context."""
    return stdit3_workers.sampling_outputs(net, 6, inputs())


def dsp_matches_one_rank() -> None:
    """Output and averaged gradients of every mode and resting axis equal the model run whole in this process;
    full attention goes through Ulysses (the 2 heads divide by 2 ranks), never the ring."""
    import videosys.dsp as dsp

    reference = model()
    args = inputs()
    weight = torch.randn(2, 8, 3, 10, 14, generator=torch.Generator().manual_seed(1))
    expected = reference(**args)
    (expected * weight).sum().backward()
    for resting in ("spatial", "temporal"):
        for mode in dsp.MODES:
            net = dsp.parallelize(copy.deepcopy(reference), resting_axis=resting, mode=mode)
            net.zero_grad()
            dsp.reset_comm_stats()
            out = net(**args)
            where = f"{mode=}, {resting=}"
            torch.testing.assert_close(out, expected, **TOL, msg=lambda m, w=where: f"{w}: {m}")
            stats = dsp.comm_stats()
            assert stats["ulysses"].calls == 4 * len(net.blocks) and "ring" not in stats, (where, stats)
            (out * weight).sum().backward()
            dsp.average_gradients(net)
            for (name, param), ref in zip(net.named_parameters(), reference.parameters()):
                atol = TOL["atol"] * max(1.0, ref.grad.abs().max().item())
                message = f"{where}, grad {name}"
                torch.testing.assert_close(
                    param.grad, ref.grad, rtol=TOL["rtol"], atol=atol, msg=lambda m, w=message: f"{w}: {m}"
                )


def pab_over_dsp(config, out: str) -> None:
    """A PAB sampling loop on the sharded model; rank 0 saves the outputs, PAB's counters and the Ulysses calls."""
    import videosys.dsp as dsp
    import videosys.pab as pab

    net = model()
    pab.enable(net, config)
    dsp.parallelize(net)
    dsp.reset_comm_stats()
    outputs = sampling_outputs(net)
    if dist.get_rank() == 0:
        torch.save({"outputs": outputs, "stats": pab.stats(net), "ulysses": dsp.comm_stats()["ulysses"].calls}, out)
