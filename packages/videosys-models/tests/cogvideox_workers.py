"""What spawned gloo ranks run in the CogVideoX DSP/PAB tests (spawned processes import it by module name)."""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist
from cogvideox_tiny import inputs

from videosys.core import denoising_step
from videosys.models.loading import load_backbone
from videosys.models.transformers import CogVideoXTransformer

SHAPE = (3, 10, 14, 5)
"""(frames, height, width, text tokens): 3 x 35 video tokens and 5 text tokens, dividing neither 2 nor 3 ranks."""
TIMESTEPS = (950, 800, 650, 500, 350, 200)
"""A sampling loop whose steps 1-5 lie inside CogVideoX's PAB window (100, 850); interval 2 reuses 1, 3, 5."""


def forward_and_grads(model: torch.nn.Module) -> dict:
    """Output and parameter gradients of a loss over a batch of 2 with different timesteps."""
    latents, text = inputs(*SHAPE)
    weight = torch.randn(latents.shape, generator=torch.Generator().manual_seed(9))
    model.zero_grad()
    out = model(latents, torch.tensor([900, 30]), text)
    (out * weight).sum().backward()
    return {"out": out.detach(), "grads": {n: p.grad.clone() for n, p in model.named_parameters()}}


def sampling_outputs(model: torch.nn.Module) -> list[torch.Tensor]:
    """The output at each step of :data:`TIMESTEPS`, each inside the denoising-step context."""
    latents, text = inputs(*SHAPE, seed=1)
    outputs = []
    with torch.no_grad():
        for i, t in enumerate(TIMESTEPS):
            with denoising_step(i, t, len(TIMESTEPS)):
                outputs.append(model(latents, torch.tensor([t, t]), text))
    return outputs


def sharded_checks(folder: str, out: str, config) -> None:
    """On the ranks: DSP forward and averaged gradients (both resting axes), PAB enabled before and after
    DSP, and the error for heads that do not divide the ranks. Rank 0 saves what the test compares."""
    import videosys.dsp as dsp
    import videosys.pab as pab

    world = dist.get_world_size()
    results: dict = {}
    for resting in ("spatial", "temporal"):
        model = dsp.parallelize(load_backbone(CogVideoXTransformer, folder), resting_axis=resting)
        result = forward_and_grads(model)
        dsp.average_gradients(model)
        result["grads"] = {n: p.grad for n, p in model.named_parameters()}
        results[resting] = result
    for pab_first in (True, False):
        model = load_backbone(CogVideoXTransformer, folder)
        steps = [lambda m=model: pab.enable(m, config), lambda m=model: dsp.parallelize(m)]
        for step in steps if pab_first else steps[::-1]:
            step()
        results[f"pab_first={pab_first}"] = {"outputs": sampling_outputs(model), "stats": pab.stats(model)}
    heads = world + 1
    with pytest.raises(ValueError, match=rf"JointAttention with {heads} heads.*{world} ranks must divide") as error:
        dsp.parallelize(CogVideoXTransformer(num_layers=1, num_heads=heads, head_dim=16, rope=True))
    results["heads_error"] = str(error.value)
    if dist.get_rank() == 0:
        torch.save(results, out)
