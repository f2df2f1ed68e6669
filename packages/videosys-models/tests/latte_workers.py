"""What spawned gloo ranks run in the DSP/PAB tests of Latte and Latte-like backbones (Open-Sora-Plan v1.1).

Spawned processes import it by module name. ``backbone`` is the class a folder loads as; ``make_inputs``
returns ``(latents, *context)``, the model's arguments around the timestep.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

from videosys.core import denoising_step
from videosys.models.loading import load_backbone
from videosys.models.transformers import LatteTransformer

OPENSORA_PLAN_V11 = Path(__file__).parent / "fixtures" / "opensora_plan" / "v1.1"
"""The Open-Sora-Plan v1.1 golden fixture: ``transformer/`` (official layout) and ``io.safetensors``."""


def inputs(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Latents (B=2, C=4, T=4, 8, 8) and caption features (2, 6, 32) for the tiny Latte."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(2, 4, 4, 8, 8, generator=g), torch.randn(2, 6, 32, generator=g)


def opensora_plan_inputs() -> tuple[torch.Tensor, ...]:
    """The v1.1 fixture's latents (2, 4, 33, 6, 10), caption features and padded text mask."""
    from safetensors.torch import load_file

    io = load_file(OPENSORA_PLAN_V11 / "io.safetensors")
    return io["latents"], io["encoder_hidden_states"], io["encoder_attention_mask"].bool()


Inputs = Callable[[], tuple[torch.Tensor, ...]]


def sampling_outputs(model, steps: int = 6, make_inputs: Inputs = inputs) -> list[torch.Tensor]:
    """The model's output at each of ``steps`` timesteps from 999 to 0, each inside the denoising-step context."""
    latents, *context = make_inputs()
    outputs = []
    with torch.no_grad():
        for i, t in enumerate(torch.linspace(999, 0, steps).long()):
            with denoising_step(i, t, steps):
                outputs.append(model(latents, t.expand(latents.shape[0]), *context))
    return outputs


def output_and_grads(
    model: nn.Module, make_inputs: Inputs, reduce: Callable[[nn.Module], None] | None = None
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """One forward at timestep 500 and the parameter gradients of a fixed random projection of its output;
    ``reduce`` (e.g. ``videosys.dsp.average_gradients``) runs between backward and reading the gradients."""
    latents, *context = make_inputs()
    output = model(latents, torch.tensor([500, 500]), *context)
    weight = torch.randn(output.shape, generator=torch.Generator().manual_seed(1))
    (output * weight).sum().backward()
    if reduce is not None:
        reduce(model)
    return output.detach(), {name: p.grad for name, p in model.named_parameters()}


def dsp_forward(
    folder: str,
    out: str,
    resting_axis: str,
    backbone: type[nn.Module] = LatteTransformer,
    make_inputs: Inputs = inputs,
    with_grads: bool = False,
) -> None:
    """One forward of the backbone in ``folder`` sharded over the ranks; rank 0 saves the output
    (``with_grads``: the output and the gradients of :func:`output_and_grads`, averaged over the ranks)."""
    import videosys.dsp as dsp

    model = load_backbone(backbone, folder)
    dsp.parallelize(model, resting_axis=resting_axis)
    if with_grads:
        result = output_and_grads(model, make_inputs, reduce=dsp.average_gradients)
    else:
        latents, *context = make_inputs()
        with torch.no_grad():
            result = model(latents, torch.tensor([500, 500]), *context)
    if dist.get_rank() == 0:
        torch.save(result, out)


def pab_over_dsp(
    folder: str,
    out: str,
    config,
    steps: int,
    pab_first: bool = True,
    backbone: type[nn.Module] = LatteTransformer,
    make_inputs: Inputs = inputs,
    resting_axis: str = "spatial",
) -> None:
    """A PAB sampling loop on the sharded backbone, PAB enabled before or after DSP and removed in the same order.

    Rank 0 saves the outputs, switch calls, PAB counters and the instance attributes left on any module.
    """
    import videosys.dsp as dsp
    import videosys.pab as pab

    model = load_backbone(backbone, folder)
    clean = {name: dict(vars(module)) for name, module in model.named_modules()}
    steps_on = [lambda: pab.enable(model, config), lambda: dsp.parallelize(model, resting_axis=resting_axis)]
    steps_off = [lambda: pab.disable(model), lambda: dsp.deparallelize(model)]
    order = [0, 1] if pab_first else [1, 0]
    for i in order:
        steps_on[i]()
    dsp.reset_comm_stats()
    outputs = sampling_outputs(model, steps, make_inputs)
    stats = pab.stats(model)
    for i in order:
        steps_off[i]()
    left = {
        f"{name}.{key}" for name, module in model.named_modules() for key in vars(module).keys() - clean[name].keys()
    }
    if dist.get_rank() == 0:
        torch.save(
            {"outputs": outputs, "switches": dsp.comm_stats()["switch"].calls, "stats": stats, "left": left}, out
        )
