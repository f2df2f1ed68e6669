"""The base every VideoSys pipeline builds on: folder checks and loading, device/dtype, the denoising loop.

A pipeline subclass says only what differs: the components of its official folder (:attr:`Pipeline.COMPONENTS`),
how to build itself from them (:meth:`Pipeline.load`), and how to call its backbone. The loop
(:meth:`Pipeline.denoise`) owns noise scaling, classifier-free guidance, the progress bar and the
:func:`videosys.core.denoising_step` context; :meth:`Pipeline.step` is the sampler hook (a scheduler's
update rule) and :class:`FrameCondition` keeps given frames fixed (image- or video-to-video through a
per-frame mask).

:class:`TextToVideoPipeline` adds what every prompt-to-video pipeline with a text encoder and a VAE repeats:
its five components, the checks on ``prompt`` and ``output_type``, the text encoder and tokenizer folders,
the backbone called with fixed text features, and the ``output_type`` tail after sampling.
"""

from __future__ import annotations

import inspect
import os
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar, get_args

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from videosys.core import denoising_step
from videosys.core.io import to_uint8_frames

from ..text_encoders import load_text_encoder
from .sampling import guide, scheduler_step_kwargs, uses_learned_variance

__all__ = [
    "Component",
    "FrameCondition",
    "IncompleteWeightsError",
    "ModelFn",
    "OutputType",
    "Pipeline",
    "TextToVideoPipeline",
    "negative_prompts_of",
    "prompts_of",
]

ModelFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
OutputType = Literal["frames", "latent", "video"]
"""What a text-to-video call returns: uint8 frame arrays, the final latents, or the decoded float videos."""
PipelineT = TypeVar("PipelineT", bound="Pipeline")


class IncompleteWeightsError(FileNotFoundError):
    """A weights folder lacks a component the pipeline needs (raised before anything is read)."""


@dataclass(frozen=True)
class Component:
    """One entry of an official weights folder: a sub-folder (or file) and the file that proves it is there."""

    name: str
    """Path inside the weights folder, e.g. ``"text_encoder"``."""
    marker: str | None
    """File inside it that must exist (``"config.json"``); None when ``name`` is itself a file."""
    holds: str
    """What it holds, for error messages and ``videosys models``."""
    required: bool = True

    def describe(self) -> str:
        return f"{self.name}{'/' if self.marker else ''} ({self.holds}{'' if self.required else ', optional'})"

    def problem(self, root: Path) -> str | None:
        """Why this component is unusable in ``root``, or None if it is present."""
        path = root / self.name
        if self.marker is None:
            return None if path.is_file() else f"{self.name}"
        if not path.is_dir():
            return f"{self.name}/"
        return None if (path / self.marker).is_file() else f"{self.name}/{self.marker}"


@dataclass(frozen=True)
class FrameCondition:
    """Frames given in advance: at every step they are set to the given clean latents noised to that step.

    The model sees them as a real video would look at that noise level, the other frames are denoised
    around them, and the result holds them exactly (the mechanism of image-to-video through a per-frame mask).
    """

    latents: torch.Tensor
    """Clean latents ``(B, C, T, ...)`` shaped like the sampled ones; only the masked frames are read."""
    mask: torch.Tensor
    """Bool ``(B, T)`` or ``(T,)``: True where the frame is given."""

    def apply(self, latents: torch.Tensor, given: torch.Tensor) -> torch.Tensor:
        """``latents`` with the masked frames taken from ``given``."""
        if given.shape != latents.shape:
            raise ValueError(f"conditioning latents {tuple(given.shape)} must match the latents {tuple(latents.shape)}")
        batch, frames = latents.shape[0], latents.shape[2]
        if tuple(self.mask.shape) not in ((frames,), (batch, frames)):
            raise ValueError(
                f"frame mask {tuple(self.mask.shape)} must be (T,) or (B, T) for latents {tuple(latents.shape)}"
            )
        mask = self.mask.to(device=latents.device, dtype=torch.bool).expand(batch, frames)
        view = mask.reshape(mask.shape[0], 1, mask.shape[1], *([1] * (latents.dim() - 3)))
        return torch.where(view, given.to(latents.dtype), latents)


class Pipeline(ABC):
    """Shared machinery of the pipelines; subclasses set :attr:`COMPONENTS`, :attr:`OFFICIAL` and :meth:`load`."""

    OFFICIAL: ClassVar[str]
    """The published folder this pipeline reads (e.g. ``"maxin-cn/Latte-1"``), named in errors."""
    COMPONENTS: ClassVar[tuple[Component, ...]]
    """The entries of the official folder, in the order they are described."""
    CUDA_DTYPE: ClassVar[torch.dtype] = torch.float16
    """The dtype on CUDA when the caller names none (float32 elsewhere)."""
    RESOLUTIONS: ClassVar[dict[str, tuple[int, int]]] = {}
    """Named sizes ``{name: (height, width)}`` the pipeline knows, which ``--resolution`` accepts by name."""

    transformer: nn.Module
    scheduler: Any

    @classmethod
    def layout(cls) -> str:
        """One line describing the official folder: ``transformer/ (...), vae/ (...), ...``."""
        return ", ".join(component.describe() for component in cls.COMPONENTS)

    @classmethod
    def check_folder(cls, path: str | os.PathLike, extra: tuple[Component, ...] = ()) -> Path:
        """``path`` as a Path, or :class:`IncompleteWeightsError` naming every missing component and the layout."""
        root = Path(path)
        expected = f"expected the layout of {cls.OFFICIAL}: {cls.layout()}"
        if not root.is_dir():
            raise IncompleteWeightsError(f"weights folder {root} does not exist; {expected}")
        needed = [c for c in cls.COMPONENTS if c.required] + list(extra)
        missing = [problem for c in needed if (problem := c.problem(root)) is not None]
        if missing:
            raise IncompleteWeightsError(f"weights folder {root} is missing {', '.join(missing)}; {expected}")
        return root

    @classmethod
    def from_pretrained(
        cls: type[PipelineT],
        path: str | os.PathLike,
        *,
        device: torch.device | str = "cpu",
        dtype: torch.dtype | None = None,
        allow_bin: bool = False,
        **options: Any,
    ) -> PipelineT:
        """Check the folder, then build the pipeline from it on ``device`` (``dtype``: :attr:`CUDA_DTYPE` on CUDA,
        else fp32).

        Nothing is fetched from a model hub: every component is read from ``path`` with ``local_files_only``.
        Safetensors weights are required unless ``allow_bin=True``. ``options`` are the subclass's own.
        """
        root = cls.check_folder(path, extra=cls.components_for(options))
        dtype = dtype or (cls.CUDA_DTYPE if torch.device(device).type == "cuda" else torch.float32)
        return cls.load(root, device=torch.device(device), dtype=dtype, allow_bin=allow_bin, **options)

    @classmethod
    @abstractmethod
    def load(
        cls: type[PipelineT], root: Path, *, device: torch.device, dtype: torch.dtype, allow_bin: bool, **options: Any
    ) -> PipelineT:
        """Build the pipeline from a checked folder."""

    @classmethod
    def components_for(cls, options: dict[str, Any]) -> tuple[Component, ...]:
        """Entries of the folder that loading with ``options`` reads beyond the required ones (e.g. the one
        transformer sub-folder of a release that publishes several); none by default."""
        return ()

    @classmethod
    def load_options(cls, call: dict[str, Any]) -> dict[str, Any]:
        """Options of :meth:`from_pretrained` that call arguments imply (the command line passes them on: which
        sub-folder ``--frames`` and ``--resolution`` name); none by default. ValueError for a call no folder fits."""
        return {}

    @classmethod
    def check_call(cls, call: dict[str, Any]) -> None:
        """Raise ValueError for call arguments that are wrong whatever the weights, before any are loaded.

        The command line runs it on a request. Here: arguments the pipeline's ``__call__`` does not take;
        pipelines with arguments that need more (Open-Sora's named sizes and lengths) extend it.
        """
        unknown = sorted(set(call) - set(inspect.signature(cls.__call__).parameters))
        if unknown:
            raise ValueError(f"{cls.__name__} takes no argument {', '.join(unknown)}")

    @property
    def device(self) -> torch.device:
        return next(self.transformer.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.transformer.parameters()).dtype

    def step(self, output: torch.Tensor, t: torch.Tensor, latents: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        """The sampler hook: latents of the next step from the guided model output (the scheduler's rule)."""
        return self.scheduler.step(output, t, latents, **kwargs, return_dict=False)[0]

    def noised(self, clean: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """``clean`` latents at the noise level of timestep ``t`` (for :class:`FrameCondition`)."""
        return self.scheduler.add_noise(clean, noise, t.reshape(1))

    def denoise(
        self,
        model_fn: ModelFn,
        latents: torch.Tensor,
        num_steps: int,
        *,
        guidance_scale: float | Callable[[torch.Tensor], float],
        guided_channels: int | None = None,
        generator: torch.Generator | None = None,
        eta: float = 0.0,
        given_frames: FrameCondition | None = None,
        progress: bool = True,
    ) -> torch.Tensor:
        """Run ``num_steps`` steps from the noise ``latents`` and return the final latents.

        ``model_fn(x, t)`` gets the model input and one timestep per sample. With ``guidance_scale > 1``
        its batch is ``[conditional; unconditional]`` and the outputs are combined by classifier-free
        guidance (on the first ``guided_channels`` channels, all if None). A callable ``guidance_scale`` gives
        each step's scale from its timestep and always guides (CogVideoX's dynamic guidance). Predicted
        variance (channels past the latents') reaches the sampler only if the scheduler uses it. Each step runs inside
        :func:`videosys.core.denoising_step`. ``given_frames`` fixes some frames (see :class:`FrameCondition`).
        """
        if num_steps < 1:
            raise ValueError(f"num_inference_steps must be >= 1, got {num_steps}")
        scheduler = self.scheduler
        scheduler.set_timesteps(num_steps, device=latents.device)
        timesteps = scheduler.timesteps
        noise = latents
        latents = latents * scheduler.init_noise_sigma
        step_kwargs = scheduler_step_kwargs(scheduler, generator, eta)
        guided = callable(guidance_scale) or guidance_scale > 1.0
        channels = latents.shape[1]
        name = type(self).__name__.removesuffix("Pipeline")
        for i, t in enumerate(tqdm(timesteps, desc=name, disable=not progress)):
            with denoising_step(i, t, len(timesteps)):
                if given_frames is not None:
                    latents = given_frames.apply(latents, self.noised(given_frames.latents, noise, t))
                model_input = torch.cat([latents, latents]) if guided else latents
                model_input = scheduler.scale_model_input(model_input, t)
                output = model_fn(model_input, t.expand(model_input.shape[0]))
                if guided:
                    scale = guidance_scale(t) if callable(guidance_scale) else guidance_scale
                    output = guide(output, scale, guided_channels)
                if not uses_learned_variance(scheduler):
                    output = output[:, :channels]
                latents = self.step(output.to(latents.dtype), t, latents, **step_kwargs)
        return latents if given_frames is None else given_frames.apply(latents, given_frames.latents)


def prompts_of(prompt: str | list[str]) -> list[str]:
    """``prompt`` as a non-empty list of strings (one video each), or ValueError naming what was given.

    A function, not a method: the embedded pipeline takes prompts too but is no :class:`TextToVideoPipeline`.
    """
    prompts = [prompt] if isinstance(prompt, str) else list(prompt)
    if not prompts or not all(isinstance(p, str) for p in prompts):
        raise ValueError(f"prompt must be a string or a non-empty list of strings, got {prompt!r}")
    return prompts


def negative_prompts_of(negative_prompt: str | list[str], count: int) -> list[str]:
    """One negative prompt per prompt: a string stands for every one of the ``count`` prompts, a list gives each
    its own (diffusers' pipelines take both); ValueError naming what was given otherwise."""
    if isinstance(negative_prompt, str):
        return [negative_prompt] * count
    negatives = list(negative_prompt)
    if len(negatives) != count or not all(isinstance(p, str) for p in negatives):
        raise ValueError(
            f"negative_prompt must be a string or a list of {count} strings (one per prompt), got {negative_prompt!r}"
        )
    return negatives


class TextToVideoPipeline(Pipeline):
    """A prompt-to-video pipeline with a text encoder and a VAE: the parts every such pipeline shares.

    A subclass still loads its folder, encodes text its model's way, samples, and says how its VAE decodes
    (:meth:`decode`); its ``__call__`` checks the arguments with :func:`prompts_of`, :func:`negative_prompts_of`
    and :meth:`check_output_type` and ends with :meth:`finish`, so every text-to-video pipeline rejects bad input
    with the same messages and returns the same three kinds of output.
    """

    vae: Any
    text_encoder: Any
    tokenizer: Any

    def __init__(self, transformer: nn.Module, vae: Any, text_encoder: Any, tokenizer: Any, scheduler: Any) -> None:
        """The components of the folder; ``scheduler`` is None for a pipeline whose sampler is built per call."""
        self.transformer = transformer
        self.vae = vae
        self.text_encoder = text_encoder
        self.tokenizer = tokenizer
        self.scheduler = scheduler

    @staticmethod
    def load_text(root: Path, *, device: torch.device, dtype: torch.dtype, allow_bin: bool) -> dict[str, Any]:
        """``{"text_encoder": ..., "tokenizer": ...}`` read from the folder's ``text_encoder/`` and ``tokenizer/``
        (keyword arguments of ``__init__``): every text-to-video folder holds them there."""
        from transformers import AutoTokenizer

        return {
            "text_encoder": load_text_encoder(root / "text_encoder", device=device, dtype=dtype, allow_bin=allow_bin),
            "tokenizer": AutoTokenizer.from_pretrained(root / "tokenizer", local_files_only=True),
        }

    @staticmethod
    def check_output_type(output_type: str) -> None:
        """ValueError unless ``output_type`` is an :data:`OutputType`; checked before any work is done."""
        if output_type not in get_args(OutputType):
            raise ValueError(f"output_type must be 'frames', 'latent' or 'video', got {output_type!r}")

    @property
    def vae_dtype(self) -> torch.dtype:
        return next(self.vae.parameters()).dtype

    def text_model_fn(self, context: torch.Tensor, **kwargs: Any) -> ModelFn:
        """``model_fn(x, t)`` for :meth:`Pipeline.denoise`: the backbone on ``x`` and the fixed text features
        ``context``, both in the backbone's dtype; ``kwargs`` (a text mask, a switch) reach it unchanged."""
        model_dtype = self.dtype
        context = context.to(model_dtype)

        def model_fn(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            return self.transformer(x.to(model_dtype), t, context, **kwargs)

        return model_fn

    @abstractmethod
    def decode(self, latents: torch.Tensor, **options: Any) -> torch.Tensor:
        """Final latents to float videos ``(B, 3, T, H, W)`` in about [-1, 1]; ``options`` are what the VAE needs
        beyond the latents (Latte's chunk size, Open-Sora's frame count)."""

    def finish(self, latents: torch.Tensor, output_type: OutputType, **options: Any) -> list[np.ndarray] | torch.Tensor:
        """The call's result from the final latents: themselves (``"latent"``), the decoded videos (``"video"``),
        or one uint8 ``(T, H, W, 3)`` array per video (``"frames"``, for :func:`videosys.core.io.save_video`).
        ``options`` go to :meth:`decode`."""
        if output_type == "latent":
            return latents
        video = self.decode(latents, **options)
        if output_type == "video":
            return video
        return [to_uint8_frames(v) for v in video]
