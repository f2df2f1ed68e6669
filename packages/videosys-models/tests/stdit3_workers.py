"""A tiny STDiT3, its inputs, and what spawned gloo ranks run in the STDiT3 + DSP/PAB tests."""

from __future__ import annotations

import copy

import torch
import torch.distributed as dist

from videosys.core import AttentionAxis, denoising_step
from videosys.models.transformers import STDiT3

__all__ = [
    "dsp_matches_one_rank",
    "inputs",
    "pab_over_dsp",
    "sampling_outputs",
    "tiny_stdit3",
]


def tiny_stdit3(seed: int = 0) -> STDiT3:
    """Two spatial/temporal pairs, 6 heads (Ulysses on 2 and 3 ranks), every parameter random."""
    torch.manual_seed(seed)
    model = STDiT3(depth=2, hidden_size=24, num_heads=6, caption_channels=8, model_max_length=5).eval()
    with torch.no_grad():
        for param in model.parameters():
            param.normal_(std=0.2)
    return model


def inputs(seed: int = 0) -> dict:
    """Latents with T=5 frames and a 5x7 patch grid (neither divides by 2 or 3; width 13 is padded to 14),
    different timesteps, a padded text mask, frames at t0 via ``x_mask``, fps and the pixel size."""
    g = torch.Generator().manual_seed(seed)
    return {
        "latents": torch.randn(2, 4, 5, 10, 13, generator=g),
        "timestep": torch.tensor([700.0, 250.0]),
        "y": torch.randn(2, 5, 8, generator=g),
        "mask": torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]),
        "x_mask": torch.tensor([[False, True, True, True, False], [True, True, False, True, True]]),
        "fps": 24.0,
        "height": 80,
        "width": 104,
    }


def sampling_outputs(model: torch.nn.Module, steps: int = 6, args: dict | None = None) -> list[torch.Tensor]:
    """The model's output at timesteps 1000, 900, ... (one per step), each inside the denoising-step context.

    ``args``: the keyword inputs of a batch of 2 (default: :func:`inputs`); their ``timestep`` is replaced.
    """
    args = inputs() if args is None else args
    outputs = []
    with torch.no_grad():
        for i in range(steps):
            t = 1000.0 - 100.0 * i
            with denoising_step(i, t, steps):
                outputs.append(model(**{**args, "timestep": torch.tensor([t, t])}))
    return outputs


def dsp_matches_one_rank() -> None:
    """Every mode and resting axis on the ranks equals the same model run whole in this process."""
    import videosys.dsp as dsp

    reference = tiny_stdit3()
    default = dsp.parallelize(copy.deepcopy(reference))
    assert dsp.sequence_parallel(default).resting_axis is AttentionAxis.TEMPORAL  # STDiT3's measured default
    with torch.no_grad():
        expected = reference(**inputs())
        for resting in ("spatial", "temporal"):
            for mode in dsp.MODES:
                model = dsp.parallelize(copy.deepcopy(reference), resting_axis=resting, mode=mode)
                where = f"{mode=}, {resting=}"
                out = model(**inputs())
                torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5, msg=lambda m, w=where: f"{w}: {m}")


def pab_over_dsp(config, resting_axis: str, out: str) -> None:
    """A PAB sampling loop on the sharded STDiT3; rank 0 saves the outputs and PAB's counters."""
    import videosys.dsp as dsp
    import videosys.pab as pab

    model = tiny_stdit3()
    pab.enable(model, config)
    dsp.parallelize(model, resting_axis=resting_axis)
    outputs = sampling_outputs(model)
    if dist.get_rank() == 0:
        torch.save({"outputs": outputs, "stats": pab.stats(model)}, out)
