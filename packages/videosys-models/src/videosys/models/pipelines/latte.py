"""Latte-1 text-to-video: T5 text encoder, Latte backbone, DDIM, VAE (2-D or temporal decoder).

Sampling matches diffusers' ``LattePipeline`` step for step (tested against it): prompt lower-cased
and stripped, 120 T5 tokens, the Latte-1 "mask feature" (a single prompt is cut to its real tokens,
a batch of prompts has its padding zeroed), guidance over all output channels, noise drawn with the
generator, frames decoded in chunks. Caption cleaning with bs4/ftfy (diffusers' optional
``clean_caption``) is not applied.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from ..loading import hub_free_options, load_backbone
from ..text_encoders import encode_prompts, mask_features
from ..transformers import LatteTransformer
from .base import Component, FrameCondition, OutputType, TextToVideoPipeline, negative_prompts_of, prompts_of
from .sampling import load_scheduler, make_generator, random_latents

__all__ = ["LattePipeline"]

MAX_TEXT_TOKENS = 120


class LattePipeline(TextToVideoPipeline):
    """Text to video with Latte-1. Defaults: 16 frames, 512x512, 50 DDIM steps, guidance 7.5, 8 fps."""

    fps = 8
    OFFICIAL = "maxin-cn/Latte-1"
    COMPONENTS = (
        Component("transformer", "config.json", "Latte backbone, diffusers LatteTransformer3DModel"),
        Component("vae", "config.json", "image VAE, AutoencoderKL"),
        Component("vae_temporal_decoder", "config.json", "AutoencoderKLTemporalDecoder", required=False),
        Component("text_encoder", "config.json", "T5 v1.1 XXL encoder"),
        Component("tokenizer", "tokenizer_config.json", "T5 tokenizer"),
        Component("scheduler", "scheduler_config.json", "DDIM"),
    )

    @classmethod
    def load(
        cls,
        root: Path,
        *,
        device: torch.device,
        dtype: torch.dtype,
        allow_bin: bool,
        vae: Literal["auto", "temporal", "2d"] = "auto",
    ) -> LattePipeline:
        """Read a checked Latte-1 folder. ``vae="auto"`` takes the temporal decoder when the folder has one
        (Latte-1's default), else ``vae/``."""
        import diffusers

        if vae == "auto":
            vae = "temporal" if (root / "vae_temporal_decoder").is_dir() else "2d"
        if vae not in ("temporal", "2d"):
            raise ValueError(f"vae must be 'auto', 'temporal' or '2d', got {vae!r}")
        if vae == "temporal":
            cls.check_folder(root, extra=(Component("vae_temporal_decoder", "config.json", "temporal decoder"),))
        vae_class, vae_folder = (
            (diffusers.AutoencoderKLTemporalDecoder, "vae_temporal_decoder")
            if vae == "temporal"
            else (diffusers.AutoencoderKL, "vae")
        )
        autoencoder = vae_class.from_pretrained(root / vae_folder, **hub_free_options(allow_bin))
        return cls(
            transformer=load_backbone(
                LatteTransformer, root / "transformer", dtype=dtype, device=device, allow_bin=allow_bin
            ),
            vae=autoencoder.to(device=device, dtype=dtype).eval(),
            scheduler=load_scheduler(root / "scheduler"),
            **cls.load_text(root, device=device, dtype=dtype, allow_bin=allow_bin),
        )

    @property
    def vae_scale_factor(self) -> int:
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    def encode_prompt(
        self, prompts: list[str], negatives: list[str], guided: bool, mask_feature: bool = True
    ) -> torch.Tensor:
        """T5 features of ``prompts``, followed by their negative prompts' when ``guided``: ``(B or 2B, L, 4096)``."""
        text = encode_prompts(
            self.tokenizer, self.text_encoder, prompts, negatives if guided else None, MAX_TEXT_TOKENS
        )
        embeds, negative = text.features, text.negative
        if mask_feature:
            embeds, negative = mask_features(embeds, text.mask, negative)
        return torch.cat([embeds, negative]) if negative is not None else embeds

    def decode(self, latents: torch.Tensor, decode_chunk_size: int = 14) -> torch.Tensor:
        """Latents ``(B, C, T, h, w)`` to float videos ``(B, 3, T, H, W)`` in about [-1, 1], chunk by chunk."""
        batch, _, frames = latents.shape[:3]
        flat = latents.permute(0, 2, 1, 3, 4).flatten(0, 1) / self.vae.config.scaling_factor
        flat = flat.to(self.vae.dtype)
        temporal = "num_frames" in inspect.signature(self.vae.forward).parameters
        decoded = []
        for start in range(0, flat.shape[0], decode_chunk_size):
            chunk = flat[start : start + decode_chunk_size]
            kwargs = {"num_frames": chunk.shape[0]} if temporal else {}
            decoded.append(self.vae.decode(chunk, **kwargs).sample)
        video = torch.cat(decoded).reshape(batch, frames, *decoded[0].shape[1:])
        return video.permute(0, 2, 1, 3, 4).float()

    @torch.no_grad()
    def __call__(
        self,
        prompt: str | list[str],
        *,
        negative_prompt: str | list[str] = "",
        num_frames: int = 16,
        height: int = 512,
        width: int = 512,
        num_inference_steps: int = 50,
        guidance_scale: float = 7.5,
        seed: int | None = None,
        generator: torch.Generator | None = None,
        eta: float = 0.0,
        mask_feature: bool = True,
        enable_temporal_attentions: bool = True,
        decode_chunk_size: int = 14,
        given_frames: FrameCondition | None = None,
        output_type: OutputType = "frames",
        progress: bool = True,
    ) -> list[np.ndarray] | torch.Tensor:
        """Generate one video per prompt.

        ``output_type="frames"`` returns a list of uint8 ``(T, H, W, 3)`` arrays (for
        :func:`videosys.core.io.save_video`); ``"latent"`` the final latents; ``"video"`` the decoded
        float videos ``(B, 3, T, H, W)``. ``given_frames`` holds latent frames fixed (video continuation).
        """
        prompts = prompts_of(prompt)
        negatives = negative_prompts_of(negative_prompt, len(prompts))
        self.check_output_type(output_type)
        factor = self.vae_scale_factor * self.transformer.patch_size
        if height % factor or width % factor:
            raise ValueError(f"height and width must be multiples of {factor}, got {height}x{width}")
        generator = make_generator(seed, generator)
        if not 1 <= num_frames <= self.transformer.video_length:
            raise ValueError(f"num_frames {num_frames}: this Latte makes 1..{self.transformer.video_length} frames")
        guided = guidance_scale > 1.0
        context = self.encode_prompt(prompts, negatives, guided, mask_feature)
        shape = (
            len(prompts),
            self.transformer.in_channels,
            num_frames,
            height // self.vae_scale_factor,
            width // self.vae_scale_factor,
        )
        latents = random_latents(shape, generator, self.device, context.dtype)
        latents = self.denoise(
            self.text_model_fn(context, enable_temporal_attentions=enable_temporal_attentions),
            latents,
            num_inference_steps,
            guidance_scale=guidance_scale,
            generator=generator,
            eta=eta,
            given_frames=given_frames,
            progress=progress,
        )
        return self.finish(latents, output_type, decode_chunk_size=decode_chunk_size)
