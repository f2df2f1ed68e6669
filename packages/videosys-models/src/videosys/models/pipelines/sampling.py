"""The sampling loop every VideoSys pipeline shares: noise, guided model calls inside the step context, scheduler.

Schedulers are diffusers' (DDIM, DDPM, ...), read from the checkpoint's ``scheduler/`` folder. Each step
runs inside :func:`videosys.core.denoising_step`, so step-aware wrappers (attention broadcast) know
where they are.
"""

from __future__ import annotations

import inspect
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from videosys.core import denoising_step

__all__ = ["denoise", "load_scheduler", "make_generator", "random_latents", "uses_learned_variance"]

ModelFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def load_scheduler(folder: str | os.PathLike) -> Any:
    """The diffusers scheduler a ``scheduler/`` folder names in its ``scheduler_config.json``."""
    import diffusers

    path = Path(folder) / "scheduler_config.json"
    if not path.is_file():
        raise FileNotFoundError(f"no scheduler_config.json in {folder}")
    name = json.loads(path.read_text()).get("_class_name")
    cls = getattr(diffusers, name, None) if isinstance(name, str) else None
    if cls is None:
        raise ValueError(f"{path} names scheduler class {name!r}, which diffusers does not provide")
    return cls.from_pretrained(folder)


def make_generator(seed: int | None, generator: torch.Generator | None) -> torch.Generator | None:
    """A CPU generator seeded with ``seed`` (noise is drawn on CPU so a seed gives the same video everywhere)."""
    if seed is not None and generator is not None:
        raise ValueError("pass either seed or generator, not both")
    return torch.Generator().manual_seed(seed) if seed is not None else generator


def random_latents(
    shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device | str, dtype: torch.dtype
) -> torch.Tensor:
    """Gaussian noise drawn on the generator's device, then moved (the convention of diffusers' ``randn_tensor``)."""
    draw_device = generator.device if generator is not None else torch.device(device)
    return torch.randn(shape, generator=generator, device=draw_device, dtype=dtype).to(device)


def uses_learned_variance(scheduler: Any) -> bool:
    """Whether the scheduler consumes the model's predicted variance (DDPM with ``learned``/``learned_range``).

    Latte-1's sampling script hands ``variance_type="learned_range"`` to DDIM too, which has no such
    option; only a scheduler whose constructor takes ``variance_type`` is given the variance.
    """
    if "variance_type" not in inspect.signature(type(scheduler).__init__).parameters:
        return False
    return getattr(scheduler.config, "variance_type", None) in ("learned", "learned_range")


def _step_kwargs(scheduler: Any, generator: torch.Generator | None, eta: float) -> dict[str, Any]:
    accepted = set(inspect.signature(scheduler.step).parameters)
    kwargs: dict[str, Any] = {}
    if "eta" in accepted:
        kwargs["eta"] = eta
    if "generator" in accepted:
        kwargs["generator"] = generator
    return kwargs


def _guide(output: torch.Tensor, scale: float, guided_channels: int | None) -> torch.Tensor:
    """Classifier-free guidance on a ``[conditional; unconditional]`` batch.

    ``guided_channels=None`` guides every output channel (Latte); an integer guides only the first
    ones (the noise) and keeps the conditional variance (DiT).
    """
    cond, uncond = output.chunk(2)
    if guided_channels is None:
        return uncond + scale * (cond - uncond)
    eps = uncond[:, :guided_channels] + scale * (cond[:, :guided_channels] - uncond[:, :guided_channels])
    return torch.cat([eps, cond[:, guided_channels:]], dim=1)


def denoise(
    model_fn: ModelFn,
    latents: torch.Tensor,
    scheduler: Any,
    num_steps: int,
    *,
    guidance_scale: float,
    guided_channels: int | None = None,
    generator: torch.Generator | None = None,
    eta: float = 0.0,
    progress: bool = True,
    desc: str = "denoising",
) -> torch.Tensor:
    """Run the scheduler's ``num_steps`` steps from noise ``latents`` and return the final latents.

    ``model_fn(x, t)`` gets the model input and one timestep per sample. With ``guidance_scale > 1``
    its batch is ``[conditional; unconditional]`` (twice the latents' batch) and the outputs are
    combined by classifier-free guidance. The model's predicted variance (channels past the latents')
    reaches the scheduler only if it uses it.
    """
    if num_steps < 1:
        raise ValueError(f"num_inference_steps must be >= 1, got {num_steps}")
    scheduler.set_timesteps(num_steps, device=latents.device)
    timesteps = scheduler.timesteps
    latents = latents * scheduler.init_noise_sigma
    step_kwargs = _step_kwargs(scheduler, generator, eta)
    guided = guidance_scale > 1.0
    channels = latents.shape[1]
    for i, t in enumerate(tqdm(timesteps, desc=desc, disable=not progress)):
        with denoising_step(i, t, len(timesteps)):
            model_input = torch.cat([latents, latents]) if guided else latents
            model_input = scheduler.scale_model_input(model_input, t)
            output = model_fn(model_input, t.expand(model_input.shape[0]))
            if guided:
                output = _guide(output, guidance_scale, guided_channels)
            if not uses_learned_variance(scheduler):
                output = output[:, :channels]
            latents = scheduler.step(output.to(latents.dtype), t, latents, **step_kwargs, return_dict=False)[0]
    return latents
