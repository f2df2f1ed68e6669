"""Prompt to video with the embedded model: word encoder, small Latte in pixel space, DDIM.

Everything it needs is one safetensors file shipped in this package (:data:`WEIGHTS`): the backbone's
weights, the word table and, in the file's metadata, the sizes, vocabulary and noise schedule it was
trained with. It is a :class:`~videosys.models.pipelines.Pipeline` whose "folder" is that one file; the
loop is the base's :meth:`~videosys.models.pipelines.Pipeline.denoise`, so each step runs inside
``videosys.core.denoising_step`` and attention broadcast applies unchanged.
"""

from __future__ import annotations

import json
import os
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch

from videosys.core.io import to_uint8_frames

from ..loading import CheckpointError, check_keys
from ..pipelines.base import Component, Pipeline, prompts_of
from ..pipelines.sampling import make_generator, random_latents
from ..transformers import LatteTransformer
from .text import WordEncoder

__all__ = ["WEIGHTS", "EmbeddedPipeline", "read_weights", "write_weights"]

WEIGHTS = resources.files("videosys.models.embedded") / "videosys-tiny.safetensors"
"""The shipped weights (package data)."""
_TEXT_KEY = "text_encoder.table"
_EMPTY_KEY = "text_encoder.empty"
_TRANSFORMER = "transformer."


def write_weights(
    path: str | os.PathLike,
    transformer: LatteTransformer,
    table: torch.Tensor,
    config: dict[str, Any],
    empty: torch.Tensor | None = None,
) -> Path:
    """Save a model as :meth:`EmbeddedPipeline.from_pretrained` reads it; ``config`` goes into the metadata.

    ``config`` holds ``transformer`` (LatteTransformer keyword arguments), ``vocabulary``, ``max_words``,
    ``scheduler`` (DDIMScheduler keyword arguments), optionally ``guidance_scale`` (the default; needs
    ``empty``, the empty caption's vector of a model trained with caption dropout) and whatever else
    documents the run.
    """
    from safetensors.torch import save_file

    scale = config.get("guidance_scale", 1.0)
    if scale != 1.0 and empty is None:
        raise ValueError(f"guidance_scale {scale} needs the empty caption's vector (empty=...) for guidance")
    tensors = {f"{_TRANSFORMER}{k}": v.detach().float().contiguous() for k, v in transformer.state_dict().items()}
    tensors[_TEXT_KEY] = table.float().contiguous()
    if empty is not None:
        tensors[_EMPTY_KEY] = empty.float().contiguous()
    save_file(tensors, str(path), metadata={"config": json.dumps(config)})
    return Path(path)


def read_weights(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The tensors and the decoded ``config`` metadata of a file :func:`write_weights` wrote."""
    from safetensors import safe_open

    if not Path(path).is_file():
        raise FileNotFoundError(f"no embedded-model weights at {path}")
    with safe_open(str(path), framework="pt") as f:
        metadata = f.metadata() or {}
        if "config" not in metadata:
            raise CheckpointError(f"{path} has no 'config' metadata: not written by write_weights")
        return {k: f.get_tensor(k) for k in f.keys()}, json.loads(metadata["config"])


class EmbeddedPipeline(Pipeline):
    """Text to video with the embedded model: 8 frames of 24x24 RGB, 20 DDIM steps, 8 fps, classifier-free
    guidance at the scale its weights file names."""

    OFFICIAL = "the videosys-tiny.safetensors shipped in videosys-models"
    COMPONENTS = (Component(WEIGHTS.name, None, "backbone, word table and schedule, from write_weights"),)
    fps = 8

    def __init__(
        self, transformer: LatteTransformer, text_encoder: WordEncoder, scheduler: Any, config: dict[str, Any]
    ) -> None:
        self.transformer = transformer
        self.text_encoder = text_encoder
        self.scheduler = scheduler
        self.config = config

    @classmethod
    def from_pretrained(
        cls,
        path: str | os.PathLike | None = None,
        *,
        device: torch.device | str = "cpu",
        dtype: torch.dtype | None = None,
        allow_bin: bool = False,
    ) -> EmbeddedPipeline:
        """Load the shipped weights (``path=None``), a file :func:`write_weights` wrote, or a folder holding one
        named like the shipped file (:attr:`COMPONENTS`); fp32 unless ``dtype``.

        ``allow_bin`` is accepted because every registered model's loader takes it; these weights are
        always safetensors. The model is tiny, so fp32 on every device (the base defaults to fp16 on CUDA).
        """
        with resources.as_file(WEIGHTS) as shipped:
            if path is None:
                file = shipped
            elif Path(path).is_dir():
                file = cls.check_folder(path) / WEIGHTS.name
            else:
                file = Path(path)
            return cls.load(file, device=torch.device(device), dtype=dtype or torch.float32, allow_bin=allow_bin)

    @classmethod
    def load(cls, root: Path, *, device: torch.device, dtype: torch.dtype, allow_bin: bool = False) -> EmbeddedPipeline:
        """Build the pipeline from a weights file (``root`` is the file itself, not a folder)."""
        from diffusers import DDIMScheduler

        tensors, config = read_weights(root)
        transformer = LatteTransformer(**config["transformer"])
        state = {k.removeprefix(_TRANSFORMER): v for k, v in tensors.items() if k.startswith(_TRANSFORMER)}
        check_keys(transformer, state, f"embedded weights {root}")
        transformer.load_state_dict(state)
        transformer = transformer.to(device=device, dtype=dtype).eval()
        text = WordEncoder(config["vocabulary"], tensors[_TEXT_KEY], config["max_words"], tensors.get(_EMPTY_KEY))
        return cls(transformer, text, DDIMScheduler(**config["scheduler"]), config)

    @torch.no_grad()
    def __call__(
        self,
        prompt: str | list[str],
        *,
        num_frames: int | None = None,
        height: int | None = None,
        width: int | None = None,
        num_inference_steps: int = 20,
        guidance_scale: float | None = None,
        seed: int | None = None,
        generator: torch.Generator | None = None,
        progress: bool = False,
    ) -> list[np.ndarray]:
        """One uint8 ``(T, 24, 24, 3)`` video per prompt; a ``seed`` gives the same video on every machine.

        ``num_frames`` (default: the trained 8) may be 1 up to the trained length; ``height`` and ``width``,
        if given, must be the trained size (the positional tables are fixed). ``guidance_scale`` defaults
        to the one the weights file names; above 1 it needs weights trained with caption dropout.
        """
        prompts = prompts_of(prompt)
        sizes = self.config["transformer"]
        frames = sizes["video_length"] if num_frames is None else num_frames
        if not 1 <= frames <= sizes["video_length"]:
            raise ValueError(f"num_frames must be 1..{sizes['video_length']} for the embedded model, got {frames}")
        size = sizes["sample_size"]
        if (height or size, width or size) != (size, size):
            raise ValueError(f"the embedded model makes {size}x{size} clips only, got {width or size}x{height or size}")
        scale = self.config.get("guidance_scale", 1.0) if guidance_scale is None else guidance_scale
        if scale < 1.0:
            raise ValueError(f"guidance_scale must be >= 1.0 (1.0: no guidance), got {scale}")
        if scale != 1.0 and self.text_encoder.empty is None:
            raise ValueError(
                f"these embedded weights have no unconditional prediction; guidance_scale must be 1.0, got {scale}"
            )
        text, mask = self.text_encoder.encode(prompts)
        if scale > 1.0:  # the base loop's guided batch is [conditional; unconditional]
            empty, empty_mask = self.text_encoder.encode_empty(len(prompts))
            text, mask = torch.cat([text, empty]), torch.cat([mask, empty_mask])
        dtype = self.dtype
        text, mask = text.to(self.device, dtype), mask.to(self.device)
        shape = (len(prompts), sizes["in_channels"], frames, size, size)
        latents = random_latents(shape, make_generator(seed, generator), self.device, dtype)

        def model_fn(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            return self.transformer(x, t, text, mask)

        video = self.denoise(model_fn, latents, num_inference_steps, guidance_scale=scale, progress=progress)
        return [to_uint8_frames(v) for v in video]
