"""Pieces of the sampling loop (:meth:`videosys.models.pipelines.Pipeline.denoise`): scheduler, noise, guidance.

Schedulers are diffusers' (DDIM, DDPM, ...), read from the checkpoint's ``scheduler/`` folder.
"""

from __future__ import annotations

import inspect
import json
import os
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "diffusers_class",
    "guide",
    "load_scheduler",
    "make_generator",
    "random_latents",
    "scheduler_step_kwargs",
    "uses_learned_variance",
]


def diffusers_class(name: str, since: str) -> Any:
    """diffusers' class ``name``, or ImportError naming the diffusers version that has it (ColossalAI pins 0.29)."""
    import diffusers

    cls = getattr(diffusers, name, None)
    if cls is None:
        raise ImportError(f"{name} needs diffusers >= {since}; this environment has diffusers {diffusers.__version__}")
    return cls


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
    return cls.from_pretrained(folder, local_files_only=True)


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


def scheduler_step_kwargs(scheduler: Any, generator: torch.Generator | None, eta: float) -> dict[str, Any]:
    accepted = set(inspect.signature(scheduler.step).parameters)
    kwargs: dict[str, Any] = {}
    if "eta" in accepted:
        kwargs["eta"] = eta
    if "generator" in accepted:
        kwargs["generator"] = generator
    return kwargs


def guide(output: torch.Tensor, scale: float, guided_channels: int | None) -> torch.Tensor:
    """Classifier-free guidance on a ``[conditional; unconditional]`` batch.

    ``guided_channels=None`` guides every output channel (Latte); an integer guides only the first
    ones (the noise) and keeps the conditional variance (DiT).
    """
    cond, uncond = output.chunk(2)
    if guided_channels is None:
        return uncond + scale * (cond - uncond)
    eps = uncond[:, :guided_channels] + scale * (cond[:, :guided_channels] - uncond[:, :guided_channels])
    return torch.cat([eps, cond[:, guided_channels:]], dim=1)
