"""Wan 2.1 text-to-video: umT5 text encoder, Wan backbone, flow-matching UniPC, Wan VAE (all from one folder).

Sampling follows diffusers' ``WanPipeline`` (tested against it on a tiny folder): prompts cleaned of HTML
escapes and runs of whitespace (diffusers also applies ``ftfy`` when installed; not here), 512 umT5 tokens
with the padding's features zeroed, guidance 5.0 over ``[prompt; negative prompt]``, the scheduler the folder
publishes (UniPC with flow sigmas and its ``flow_shift``), latents un-normalised by the VAE's per-channel
``latents_mean`` / ``latents_std`` before decoding.
"""

from __future__ import annotations

import html
import re
from pathlib import Path

import numpy as np
import torch

from ..loading import hub_free_options, load_backbone
from ..text_encoders import encode_texts
from ..transformers import WanTransformer
from .base import Component, OutputType, TextToVideoPipeline, negative_prompts_of, prompts_of
from .sampling import diffusers_class, load_scheduler, make_generator, random_latents

__all__ = ["WanPipeline", "clean_prompt"]

MAX_TEXT_TOKENS = 512


def clean_prompt(text: str) -> str:
    """HTML entities decoded (twice, as Wan does) and whitespace runs collapsed."""
    return re.sub(r"\s+", " ", html.unescape(html.unescape(text)).strip()).strip()


class WanPipeline(TextToVideoPipeline):
    """Text to video with Wan 2.1. Defaults (diffusers' ``WanPipeline``): 81 frames, 480x832, 50 steps,
    guidance 5.0, empty negative prompt, 16 fps."""

    fps = 16
    OFFICIAL = "Wan-AI/Wan2.1-T2V-1.3B-Diffusers or -14B-Diffusers"
    COMPONENTS = (
        Component("transformer", "config.json", "Wan backbone, diffusers WanTransformer3DModel"),
        Component("vae", "config.json", "Wan VAE, AutoencoderKLWan"),
        Component("text_encoder", "config.json", "umT5 XXL encoder, UMT5EncoderModel"),
        Component("tokenizer", "tokenizer_config.json", "umT5 tokenizer"),
        Component("scheduler", "scheduler_config.json", "UniPC multistep with flow sigmas"),
    )
    CUDA_DTYPE = torch.bfloat16

    @classmethod
    def load(cls, root: Path, *, device: torch.device, dtype: torch.dtype, allow_bin: bool) -> WanPipeline:
        """Read a checked Wan 2.1 folder; the VAE stays in float32, as Wan runs it."""
        vae = diffusers_class("AutoencoderKLWan", "0.33").from_pretrained(root / "vae", **hub_free_options(allow_bin))
        return cls(
            transformer=load_backbone(
                WanTransformer, root / "transformer", dtype=dtype, device=device, allow_bin=allow_bin
            ),
            vae=vae.to(device=device, dtype=torch.float32).eval(),
            scheduler=load_scheduler(root / "scheduler"),
            **cls.load_text(root, device=device, dtype=dtype, allow_bin=allow_bin),
        )

    @property
    def temporal_factor(self) -> int:
        return self.vae.config.scale_factor_temporal

    @property
    def spatial_factor(self) -> int:
        return self.vae.config.scale_factor_spatial

    def encode_prompt(self, prompts: list[str]) -> torch.Tensor:
        """umT5 features ``(B, 512, C)`` with the padding's features set to zero."""
        features, mask = encode_texts(
            self.tokenizer, self.text_encoder, [clean_prompt(p) for p in prompts], MAX_TEXT_TOKENS
        )
        return features * mask[:, :, None].to(features.dtype)

    def latent_shape(self, batch: int, num_frames: int, height: int, width: int) -> tuple[int, ...]:
        """``(B, C, T, h, w)`` latents of a video, or ValueError naming the sizes the VAE and patches accept."""
        if num_frames < 1 or (num_frames - 1) % self.temporal_factor:
            raise ValueError(f"num_frames must be 1 + a multiple of {self.temporal_factor} (e.g. 81), got {num_frames}")
        factor = self.spatial_factor * self.transformer.patch_size[1]
        if height % factor or width % factor or height < 1 or width < 1:
            raise ValueError(f"height and width must be positive multiples of {factor}, got {height}x{width}")
        frames = (num_frames - 1) // self.temporal_factor + 1
        return batch, self.transformer.in_channels, frames, height // self.spatial_factor, width // self.spatial_factor

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents to float videos ``(B, 3, T, H, W)`` in about [-1, 1], un-normalised per channel first."""
        config = self.vae.config
        view = (1, config.z_dim, 1, 1, 1)
        latents = latents.to(self.vae.dtype)
        mean = torch.tensor(config.latents_mean, device=latents.device, dtype=latents.dtype).view(view)
        std = torch.tensor(config.latents_std, device=latents.device, dtype=latents.dtype).view(view)
        return self.vae.decode(latents * std + mean, return_dict=False)[0].float()

    @torch.no_grad()
    def __call__(
        self,
        prompt: str | list[str],
        *,
        negative_prompt: str | list[str] = "",
        num_frames: int = 81,
        height: int = 480,
        width: int = 832,
        num_inference_steps: int = 50,
        guidance_scale: float = 5.0,
        seed: int | None = None,
        generator: torch.Generator | None = None,
        output_type: OutputType = "frames",
        progress: bool = True,
    ) -> list[np.ndarray] | torch.Tensor:
        """Generate one video per prompt.

        ``output_type="frames"`` returns a list of uint8 ``(T, H, W, 3)`` arrays (for
        :func:`videosys.core.io.save_video`); ``"latent"`` the final latents; ``"video"`` float ``(B, 3, T, H, W)``.
        """
        prompts = prompts_of(prompt)
        negatives = negative_prompts_of(negative_prompt, len(prompts))
        self.check_output_type(output_type)
        shape = self.latent_shape(len(prompts), num_frames, height, width)
        generator = make_generator(seed, generator)
        guided = guidance_scale > 1.0
        context = self.encode_prompt(prompts + negatives if guided else prompts)
        latents = random_latents(shape, generator, self.device, torch.float32)
        latents = self.denoise(
            self.text_model_fn(context),
            latents,
            num_inference_steps,
            guidance_scale=guidance_scale,
            generator=generator,
            progress=progress,
        )
        return self.finish(latents, output_type)
