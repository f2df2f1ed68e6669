"""Open-Sora 1.2: text to video, image to video and video continuation with STDiT3, rectified flow and VAE 1.2.

Sampling follows the original's inference script (hpcaitech/Open-Sora v1.2.0): the prompt gets
``" aesthetic score: 6.5."``, T5 tokens up to STDiT3's ``model_max_length`` (300), the unconditional
branch of guidance is the learned null caption ``y_embedding`` (under the prompt's token mask), the model
is told fps, height and width, and :class:`~videosys.models.RectifiedFlow` runs the loop (its shifted
timesteps, Euler steps, guidance and per-frame mask). Reference frames (an image to animate, a clip to
continue) are encoded by the VAE, written into the first latent frames and held at timestep 0 through the
mask, as the original's mask strategies ``"0,0,0,0,1"`` (image) and ``"0,0,-k,0,k"`` (clip) do. Caption
cleaning (the original's optional ``clean_caption``) is not applied.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .. import opensora_presets as presets
from ..loading import load_backbone
from ..schedulers import RectifiedFlow
from ..text_encoders import encode_texts
from ..transformers import STDiT3
from ..vae import OpenSoraVAE
from .base import Component, OutputType, TextToVideoPipeline, prompts_of
from .sampling import make_generator, random_latents

__all__ = ["OpenSoraPipeline", "frames_to_video"]


def frames_to_video(frames: np.ndarray | torch.Tensor, height: int, width: int) -> torch.Tensor:
    """uint8 frames ``(T, H, W, 3)`` (or one image ``(H, W, 3)``) as a ``(1, 3, T, height, width)`` video in [-1, 1].

    Each frame is scaled to cover ``height x width`` and centre-cropped (the original's ``resize_crop``), with
    bilinear antialiased resampling.
    """
    x = torch.as_tensor(np.asarray(frames))
    if x.dim() == 3:
        x = x[None]
    if x.dim() != 4 or x.shape[-1] != 3 or x.dtype != torch.uint8:
        raise ValueError(
            f"reference frames must be uint8 (H, W, 3) or (T, H, W, 3), got {x.dtype} {tuple(x.shape)}"
        )
    x = x.permute(0, 3, 1, 2).float() / 127.5 - 1.0
    scale = max(height / x.shape[2], width / x.shape[3])
    size = (max(height, round(x.shape[2] * scale)), max(width, round(x.shape[3] * scale)))
    x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
    top, left = (size[0] - height) // 2, (size[1] - width) // 2
    x = x[:, :, top : top + height, left : left + width].clamp(-1, 1)
    return x.permute(1, 0, 2, 3)[None]


class OpenSoraPipeline(TextToVideoPipeline):
    """Open-Sora 1.2. Defaults: 480p at 9:16 (480x854, height:width), 2 s (51 frames at 24 fps), 30 steps, cfg 7.0.

    The weights folder gathers the three published parts: ``transformer/`` = ``hpcai-tech/OpenSora-STDiT-v3``,
    ``vae/`` = ``hpcai-tech/OpenSora-VAE-v1.2``, ``text_encoder/`` and ``tokenizer/`` = ``DeepFloyd/t5-v1_1-xxl``
    (the same folder may serve both).
    """

    fps = presets.VIDEO_FPS
    CUDA_DTYPE = torch.bfloat16  # as the original samples; T5 v1.1 XXL overflows in float16
    OFFICIAL = "Open-Sora 1.2"
    COMPONENTS = (
        Component("transformer", "config.json", "STDiT3, hpcai-tech/OpenSora-STDiT-v3"),
        Component("vae", "config.json", "VAE 1.2, hpcai-tech/OpenSora-VAE-v1.2"),
        Component("text_encoder", "config.json", "T5 v1.1 XXL encoder"),
        Component("tokenizer", "tokenizer_config.json", "T5 tokenizer"),
    )

    def __init__(self, transformer: STDiT3, vae: OpenSoraVAE, text_encoder: object, tokenizer: object) -> None:
        """No scheduler: each call builds its :class:`RectifiedFlow` from the call's steps, guidance and size."""
        super().__init__(transformer, vae, text_encoder, tokenizer, scheduler=None)

    @classmethod
    def load(cls, root: Path, *, device: torch.device, dtype: torch.dtype, allow_bin: bool) -> OpenSoraPipeline:
        """Read a checked folder; the VAE and T5 run in ``dtype`` too (the original runs all three in bf16)."""
        return cls(
            transformer=load_backbone(STDiT3, root / "transformer", dtype=dtype, device=device, allow_bin=allow_bin),
            vae=OpenSoraVAE.from_pretrained(root / "vae", dtype=dtype, device=device),
            **cls.load_text(root, device=device, dtype=dtype, allow_bin=allow_bin),
        )

    @classmethod
    def _plan(
        cls,
        *,
        resolution: str,
        aspect_ratio: str,
        duration: str | int,
        height: int | None,
        width: int | None,
        num_frames: int | None,
        num_inference_steps: int,
        guidance_scale: float,
        image: object,
        video: object,
        keep_frames: int | None,
        **_: object,
    ) -> tuple[int, int, int, RectifiedFlow]:
        """:meth:`plan` of every argument of ``__call__`` (other arguments of the call are ignored here)."""
        if image is not None and video is not None:
            raise ValueError("give image (to animate) or video (to continue), not both")
        if keep_frames is not None and (video is None or keep_frames < 1):
            raise ValueError(f"keep_frames={keep_frames}: expected a count >= 1 of the video's latent frames to keep")
        if (height is None) != (width is None):
            raise ValueError(f"give both height and width or neither, got height={height}, width={width}")
        if height is None:
            height, width = presets.image_size(resolution, aspect_ratio)
        frames = presets.num_frames(num_frames if num_frames is not None else duration)
        sampler = RectifiedFlow(num_steps=num_inference_steps, guidance_scale=guidance_scale)
        sampler.timesteps(height=height, width=width, num_frames=frames)  # rejects sizes it has no shift for
        return height, width, frames, sampler

    @classmethod
    def plan(cls, call: dict[str, Any]) -> tuple[int, int, int, RectifiedFlow]:
        """``(height, width, num_frames, sampler)`` of the call arguments ``call`` (``__call__``'s defaults for
        the rest), or ValueError naming a bad one. Needs no weights."""
        parameters = inspect.signature(cls.__call__).parameters.values()
        defaults = {p.name: p.default for p in parameters if p.default is not inspect.Parameter.empty}
        return cls._plan(**{**defaults, **call})

    @classmethod
    def check_call(cls, call: dict[str, Any]) -> None:
        super().check_call(call)
        cls.plan(call)

    @property
    def vae_scale_factor(self) -> int:
        return self.vae.spatial_vae.downsample

    def encode_prompt(self, prompts: list[str], aesthetic_score: float | None) -> tuple[torch.Tensor, torch.Tensor]:
        """T5 features of the prompts followed by the null caption, ``(2B, L, D)``, and the token mask ``(2B, L)``.

        The null caption is read under the prompt's mask, as the original's STDiT3 repeats the mask for it.
        """
        null = self.transformer.null_caption  # (model_max_length = 300 tokens, 4096) as published
        texts = [presets.with_aesthetic_score(p, aesthetic_score) for p in prompts]
        features, mask = encode_texts(self.tokenizer, self.text_encoder, texts, null.shape[0])
        if null.shape != features.shape[1:]:
            raise ValueError(
                f"the text encoder gives {tuple(features.shape[1:])} token features but STDiT3's null caption is "
                f"{tuple(null.shape)}: the T5 and the transformer do not belong together"
            )
        null = null.to(features.dtype).expand(len(prompts), -1, -1)
        return torch.cat([features, null]), mask.repeat(2, 1)

    def decode(self, latents: torch.Tensor, num_frames: int) -> torch.Tensor:
        """Float videos ``(B, 3, num_frames, H, W)`` from latents: the VAE needs the length (its micro-clips)."""
        return self.vae.decode(latents.to(self.vae_dtype), num_frames).float()

    def _reference_latents(
        self,
        frames: np.ndarray | torch.Tensor,
        height: int,
        width: int,
        keep: int | None,
        generator: torch.Generator | None,
    ) -> torch.Tensor:
        """VAE latents ``(1, C, k, h, w)`` of the last ``keep`` latent frames of the reference (all if None)."""
        video = frames_to_video(frames, height, width).to(device=self.device, dtype=self.vae_dtype)
        latents = self.vae.encode(video, generator=generator)
        if keep is not None and keep > latents.shape[2]:
            raise ValueError(f"keep_frames={keep}: the reference encodes to only {latents.shape[2]} latent frames")
        return latents if keep is None else latents[:, :, -keep:]

    @torch.no_grad()
    def __call__(
        self,
        prompt: str | list[str],
        *,
        resolution: str = "480p",
        aspect_ratio: str = "9:16",
        duration: str | int = "2s",
        height: int | None = None,
        width: int | None = None,
        num_frames: int | None = None,
        num_inference_steps: int = 30,
        guidance_scale: float = 7.0,
        fps: int = presets.VIDEO_FPS,
        aesthetic_score: float | None = 6.5,
        image: np.ndarray | torch.Tensor | None = None,
        video: np.ndarray | torch.Tensor | None = None,
        keep_frames: int | None = None,
        seed: int | None = None,
        generator: torch.Generator | None = None,
        output_type: OutputType = "frames",
        progress: bool = True,
    ) -> list[np.ndarray] | torch.Tensor:
        """Generate one video per prompt.

        Size: ``resolution`` + ``aspect_ratio`` (height:width, Open-Sora's tables), or explicit ``height`` and
        ``width`` in pixels; length: ``duration`` (``"2s"`` = 51 frames, or a frame count) or ``num_frames``.
        Videos come out at the VAE's size, ``height // 8 * 8`` (854 -> 848). ``image`` (uint8 ``(H, W, 3)``)
        is animated: it becomes the first latent frame. ``video`` (uint8 ``(T, H, W, 3)``) is continued: its
        last ``keep_frames`` latent frames (all if None) become the first ones. Reference frames are resized
        to cover the video and centre-cropped. ``output_type``: ``"frames"`` (uint8 ``(T, H, W, 3)`` arrays),
        ``"latent"`` or ``"video"`` (floats ``(B, 3, T, H, W)`` in about [-1, 1]).
        """
        prompts = prompts_of(prompt)
        self.check_output_type(output_type)
        height, width, frames, sampler = self._plan(
            resolution=resolution,
            aspect_ratio=aspect_ratio,
            duration=duration,
            height=height,
            width=width,
            num_frames=num_frames,
            num_inference_steps=num_inference_steps,
            guidance_scale=guidance_scale,
            image=image,
            video=video,
            keep_frames=keep_frames,
        )
        factor = self.vae_scale_factor
        if height < factor or width < factor:
            raise ValueError(f"height and width must be at least {factor} pixels, got {height}x{width}")
        generator = make_generator(seed, generator)

        context, text_mask = self.encode_prompt(prompts, aesthetic_score)
        batch = len(prompts)
        shape = (batch, *self.vae.latent_shape(frames, height, width))
        z = random_latents(shape, generator, self.device, torch.float32)
        mask = None
        reference = image if image is not None else video
        if reference is not None:
            keep = 1 if image is not None else keep_frames
            given = self._reference_latents(reference, shape[3] * factor, shape[4] * factor, keep, generator)
            if given.shape[2] >= shape[2]:
                raise ValueError(
                    f"the reference gives {given.shape[2]} latent frames but the video has {shape[2]}: "
                    "nothing would be generated; ask for a longer video or keep fewer frames"
                )
            z[:, :, : given.shape[2]] = given.float()
            mask = torch.ones(batch, shape[2], device=z.device)
            mask[:, : given.shape[2]] = 0

        model_dtype = self.dtype
        size = {"fps": presets.conditioning_fps(frames, fps), "height": height, "width": width}

        def model_fn(x: torch.Tensor, t: torch.Tensor, x_mask: torch.Tensor | None) -> torch.Tensor:
            return self.transformer(x.to(model_dtype), t, context, mask=text_mask, x_mask=x_mask, **size)

        latents = sampler.sample(
            model_fn, z, height=height, width=width, num_frames=frames, mask=mask, generator=generator,
            progress=progress,
        )
        return self.finish(latents, output_type, num_frames=frames)
