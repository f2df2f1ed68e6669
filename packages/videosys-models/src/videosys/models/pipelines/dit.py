"""DiT class-conditional images: DiT backbone, diffusers scheduler (DDIM/DDPM), sd-vae ``AutoencoderKL``.

Sampling matches diffusers' ``DiTPipeline`` (tested against it): guidance on the noise channels only
with the null class as the unconditional branch, latents scaled by the VAE's ``scaling_factor``
(0.18215). Label names come only from the checkpoint (``model_index.json``'s ``id2label``); without
them, classes are numbers.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from videosys.core.io import to_uint8_frames

from ..loading import hub_free_options, load_backbone
from ..transformers import DiTTransformer
from .base import Component, Pipeline
from .sampling import load_scheduler, make_generator, random_latents

__all__ = ["DiTPipeline", "parse_id2label"]


def parse_id2label(id2label: dict[Any, str]) -> dict[str, int]:
    """``{class id: "name, synonym, ..."}`` to ``{name: id}`` for every comma-separated synonym."""
    labels: dict[str, int] = {}
    for key, names in id2label.items():
        for name in names.split(","):
            labels[name.strip()] = int(key)
    return dict(sorted(labels.items()))


class DiTPipeline(Pipeline):
    """Class label to image with DiT-XL/2 (256 or 512). Defaults: 50 steps, guidance 4.0."""

    OFFICIAL = "facebook/DiT-XL-2-256 or -512"
    COMPONENTS = (
        Component("transformer", "config.json", "DiT backbone, diffusers DiTTransformer2DModel"),
        Component("vae", "config.json", "sd-vae-ft-ema AutoencoderKL"),
        Component("scheduler", "scheduler_config.json", "DDIM or DDPM"),
        Component("model_index.json", None, "id2label: ImageNet class names", required=False),
    )

    def __init__(
        self, transformer: DiTTransformer, vae: Any, scheduler: Any, id2label: dict[Any, str] | None = None
    ) -> None:
        self.transformer = transformer
        self.vae = vae
        self.scheduler = scheduler
        self.labels = parse_id2label(id2label) if id2label else {}

    @classmethod
    def load(cls, root: Path, *, device: torch.device, dtype: torch.dtype, allow_bin: bool) -> DiTPipeline:
        """Read a checked DiT folder; class names come from ``model_index.json``'s ``id2label`` when present."""
        import diffusers

        index = root / "model_index.json"
        id2label = json.loads(index.read_text()).get("id2label") if index.is_file() else None
        vae = diffusers.AutoencoderKL.from_pretrained(root / "vae", **hub_free_options(allow_bin))
        return cls(
            transformer=load_backbone(
                DiTTransformer, root / "transformer", dtype=dtype, device=device, allow_bin=allow_bin
            ),
            vae=vae.to(device=device, dtype=dtype).eval(),
            scheduler=load_scheduler(root / "scheduler"),
            id2label=id2label,
        )

    def label_ids(self, labels: list[int | str]) -> list[int]:
        """Class ids from ids or names (names need the checkpoint's ``id2label``)."""
        ids = []
        num_classes = self.transformer.y_embedder.num_classes
        for label in labels:
            if isinstance(label, str) and label.strip().isdigit():
                label = int(label)
            if isinstance(label, str):
                if not self.labels:
                    raise ValueError(
                        f"class name {label!r} given but this checkpoint has no id2label table; pass class ids "
                        f"0..{num_classes - 1}"
                    )
                if label not in self.labels:
                    raise ValueError(f"unknown class name {label!r}; known names include {list(self.labels)[:10]}")
                label = self.labels[label]
            if not 0 <= label < num_classes:
                raise ValueError(f"class id {label} is outside 0..{num_classes - 1}")
            ids.append(label)
        return ids

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents ``(B, C, h, w)`` to float images ``(B, 3, H, W)`` in [-1, 1] (roughly)."""
        latents = latents.to(self.vae.dtype) / self.vae.config.scaling_factor
        return self.vae.decode(latents).sample.float()

    @torch.no_grad()
    def __call__(
        self,
        class_labels: int | str | list[int | str],
        *,
        num_inference_steps: int = 50,
        guidance_scale: float = 4.0,
        seed: int | None = None,
        generator: torch.Generator | None = None,
        eta: float = 0.0,
        output_type: Literal["images", "latent", "video"] = "images",
        progress: bool = True,
    ) -> np.ndarray | torch.Tensor:
        """Generate one image per label: uint8 ``(B, H, W, 3)`` (``"images"``), latents, or float ``(B, 3, H, W)``."""
        labels = [class_labels] if isinstance(class_labels, (int, str)) else list(class_labels)
        if output_type not in ("images", "latent", "video"):
            raise ValueError(f"output_type must be 'images', 'latent' or 'video', got {output_type!r}")
        ids = torch.tensor(self.label_ids(labels), device=self.device)
        generator = make_generator(seed, generator)
        model = self.transformer
        dtype = self.dtype
        shape = (len(ids), model.in_channels, model.sample_size, model.sample_size)
        latents = random_latents(shape, generator, self.device, dtype)
        guided = guidance_scale > 1.0
        model_labels = torch.cat([ids, torch.full_like(ids, model.null_class)]) if guided else ids

        def model_fn(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            return model(x.to(dtype), t, model_labels)

        latents = self.denoise(
            model_fn,
            latents,
            num_inference_steps,
            guidance_scale=guidance_scale,
            guided_channels=model.in_channels,
            generator=generator,
            eta=eta,
            progress=progress,
        )
        if output_type == "latent":
            return latents
        images = self.decode(latents)
        if output_type == "video":
            return images
        return to_uint8_frames(images.transpose(0, 1))  # the batch as the frame axis: (B, H, W, 3)
