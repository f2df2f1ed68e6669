"""CogVideoX 2b / 5b text-to-video: T5 text encoder, CogVideoX backbone, the published scheduler, CogVideoX VAE.

Sampling follows diffusers' ``CogVideoXPipeline`` step for step (tested against it): 226 T5 tokens encoded
without a padding mask, noise drawn as ``(B, T, C, h, w)``, guidance ``uncond + s * (cond - uncond)``,
optionally dynamic (``s`` rising with the step, the 5b default), ``CogVideoXDDIMScheduler`` (2b) or
``CogVideoXDPMScheduler`` (5b, which also carries its previous prediction), the whole latent video decoded
at once. The scheduler, the VAE and their classes come from diffusers 0.30+ (imported on first use).
"""

from __future__ import annotations

import inspect
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from videosys.core import current_step

from ..loading import hub_free_options, load_backbone
from ..text_encoders import encode_texts
from ..transformers import CogVideoXTransformer
from .base import Component, OutputType, TextToVideoPipeline, negative_prompts_of, prompts_of
from .sampling import load_scheduler, make_generator, random_latents

__all__ = ["CogVideoXPipeline", "dynamic_guidance"]

MAX_TEXT_TOKENS = 226


def _diffusers_with_cogvideox() -> Any:
    """diffusers, or an error naming the version that brought CogVideoX (ColossalAI pins 0.29)."""
    import diffusers

    if not hasattr(diffusers, "AutoencoderKLCogVideoX"):
        raise ImportError(
            f"CogVideoX needs diffusers >= 0.30 (AutoencoderKLCogVideoX, CogVideoX schedulers); "
            f"diffusers {diffusers.__version__} is installed"
        )
    return diffusers


def dynamic_guidance(scale: float, num_steps: int) -> Any:
    """CogVideoX's dynamic guidance: ``1 + scale * (1 - cos(pi * ((num_steps - t) / num_steps) ** 5)) / 2``.

    As diffusers computes it, from the timestep ``t`` itself (not the step index).
    """

    def at(t: torch.Tensor) -> float:
        return 1 + scale * (1 - math.cos(math.pi * ((num_steps - float(t)) / num_steps) ** 5.0)) / 2

    return at


class CogVideoXPipeline(TextToVideoPipeline):
    """Text to video with CogVideoX 2b or 5b. Defaults: 49 frames, 480x720, 50 steps, guidance 6, 8 fps."""

    fps = 8
    OFFICIAL = "THUDM/CogVideoX-2b or THUDM/CogVideoX-5b"
    CUDA_DTYPE = torch.bfloat16
    COMPONENTS = (
        Component("transformer", "config.json", "CogVideoX backbone, diffusers CogVideoXTransformer3DModel"),
        Component("vae", "config.json", "AutoencoderKLCogVideoX"),
        Component("text_encoder", "config.json", "T5 v1.1 XXL encoder"),
        Component("tokenizer", "tokenizer_config.json", "T5 tokenizer"),
        Component("scheduler", "scheduler_config.json", "CogVideoXDDIMScheduler (2b) or CogVideoXDPMScheduler (5b)"),
    )

    def __init__(
        self, transformer: CogVideoXTransformer, vae: Any, text_encoder: Any, tokenizer: Any, scheduler: Any
    ) -> None:
        super().__init__(transformer, vae, text_encoder, tokenizer, scheduler)
        self._previous: tuple[torch.Tensor | None, torch.Tensor | None] = (None, None)

    @classmethod
    def load(cls, root: Path, *, device: torch.device, dtype: torch.dtype, allow_bin: bool) -> CogVideoXPipeline:
        diffusers = _diffusers_with_cogvideox()

        vae = diffusers.AutoencoderKLCogVideoX.from_pretrained(root / "vae", **hub_free_options(allow_bin))
        return cls(
            transformer=load_backbone(
                CogVideoXTransformer, root / "transformer", dtype=dtype, device=device, allow_bin=allow_bin
            ),
            vae=vae.to(device=device, dtype=dtype).eval(),
            scheduler=load_scheduler(root / "scheduler"),
            **cls.load_text(root, device=device, dtype=dtype, allow_bin=allow_bin),
        )

    @property
    def vae_scale_factor(self) -> int:
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    @property
    def vae_temporal_factor(self) -> int:
        return int(self.vae.config.temporal_compression_ratio)

    def step(self, output: torch.Tensor, t: torch.Tensor, latents: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        """The scheduler's step; ``CogVideoXDPMScheduler`` also takes the previous step's timestep and prediction."""
        if "old_pred_original_sample" not in inspect.signature(self.scheduler.step).parameters:
            return super().step(output, t, latents, **kwargs)
        step = current_step()
        previous_t, previous_pred = (None, None) if step is None or step.is_first else self._previous
        latents, prediction = self.scheduler.step(
            output, previous_pred, t, previous_t, latents, **kwargs, return_dict=False
        )
        self._previous = (t, prediction)
        return latents

    def encode_prompt(
        self, prompts: list[str], negatives: list[str], guided: bool, max_sequence_length: int
    ) -> torch.Tensor:
        """T5 features of ``prompts``, then their negative prompts' when ``guided``: ``(B or 2B, L, 4096)``."""
        texts = prompts + negatives if guided else prompts
        return encode_texts(self.tokenizer, self.text_encoder, texts, max_sequence_length, mask_padding=False)[0]

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents ``(B, C, T, h, w)`` to float videos ``(B, 3, F, H, W)`` in about [-1, 1]."""
        latents = latents.to(self.vae.dtype) / self.vae.config.scaling_factor
        return self.vae.decode(latents).sample.float()

    @torch.no_grad()
    def __call__(
        self,
        prompt: str | list[str],
        *,
        negative_prompt: str | list[str] = "",
        num_frames: int = 49,
        height: int = 480,
        width: int = 720,
        num_inference_steps: int = 50,
        guidance_scale: float = 6.0,
        use_dynamic_cfg: bool = False,
        max_sequence_length: int = MAX_TEXT_TOKENS,
        seed: int | None = None,
        generator: torch.Generator | None = None,
        eta: float = 0.0,
        output_type: OutputType = "frames",
        progress: bool = True,
    ) -> list[np.ndarray] | torch.Tensor:
        """Generate one video per prompt.

        ``num_frames`` is ``4k + 1`` (the VAE keeps the first frame and compresses the rest 4x).
        ``output_type="frames"`` returns a list of uint8 ``(F, H, W, 3)`` arrays; ``"latent"`` the final
        latents ``(B, C, T, h, w)``; ``"video"`` the decoded float videos ``(B, 3, F, H, W)``.
        """
        prompts = prompts_of(prompt)
        negatives = negative_prompts_of(negative_prompt, len(prompts))
        self.check_output_type(output_type)
        factor = self.vae_scale_factor * self.transformer.patch_size
        if height % factor or width % factor:
            raise ValueError(f"height and width must be multiples of {factor}, got {height}x{width}")
        temporal = self.vae_temporal_factor
        if num_frames < 1 or (num_frames - 1) % temporal:
            raise ValueError(f"num_frames must be {temporal}k + 1 (1, {temporal + 1}, ...), got {num_frames}")
        generator = make_generator(seed, generator)
        guided = guidance_scale > 1.0
        context = self.encode_prompt(prompts, negatives, guided, max_sequence_length)
        shape = (
            len(prompts),
            (num_frames - 1) // temporal + 1,
            self.transformer.in_channels,
            height // self.vae_scale_factor,
            width // self.vae_scale_factor,
        )
        # The loop keeps diffusers' layout, (B, T, C, h, w): the noise (initial and the schedulers' own) is drawn
        # in it, so a seed gives diffusers' video. The backbone takes and returns (B, C, T, h, w).
        latents = random_latents(shape, generator, self.device, context.dtype)
        model_dtype = self.dtype

        def model_fn(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            return (
                self.transformer(x.transpose(1, 2).to(model_dtype), t, context.to(model_dtype)).transpose(1, 2).float()
            )

        scale = dynamic_guidance(guidance_scale, num_inference_steps) if guided and use_dynamic_cfg else guidance_scale
        latents = self.denoise(
            model_fn,
            latents,
            num_inference_steps,
            guidance_scale=scale,
            generator=generator,
            eta=eta,
            progress=progress,
        )
        return self.finish(latents.transpose(1, 2), output_type)
