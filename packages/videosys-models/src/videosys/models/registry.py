"""Models by name: which pipeline loads a folder, with which defaults (sampling and PAB)."""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from videosys.pab import PABConfig

from .pab_defaults import (
    COGVIDEOX_PAB,
    EMBEDDED_PAB,
    LATTE_PAB,
    OPENSORA_PAB,
    OPENSORA_PLAN_V11_PAB,
    OPENSORA_PLAN_V12_PAB,
    WAN_PAB,
)

__all__ = ["DEFAULT_MODEL", "MODELS", "ModelSpec", "UnknownModelError", "get_model", "list_models", "load"]


class UnknownModelError(ValueError):
    """A model name that is not registered."""


@dataclass(frozen=True)
class ModelSpec:
    """A registered model: its pipeline class, sampling defaults and PAB defaults."""

    name: str
    task: Literal["text-to-video", "class-to-image"]
    pipeline: str
    """``"module:Class"`` of the pipeline, imported when the model is loaded."""
    description: str
    defaults: Mapping[str, Any] = field(default_factory=dict)
    """Keyword arguments of the pipeline call that reproduce the published samples."""
    pab: PABConfig | None = None
    sample_size: int | None = None
    """The latent size the checkpoint must have (tells DiT 256 from 512)."""
    options: tuple[str, ...] = ()
    """``videosys generate`` options only this model takes (``--image``, ``--duration``, ...); a named
    ``--resolution`` such as ``480p`` is accepted when ``"resolution"`` is among :attr:`defaults`."""
    bundled: bool = False
    """Its weights ship inside videosys-models, so :func:`load` needs no path."""

    def pipeline_class(self) -> type:
        module, name = self.pipeline.split(":")
        return getattr(importlib.import_module(module), name)


MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            name="videosys-tiny",
            task="text-to-video",
            pipeline="videosys.models.embedded:EmbeddedPipeline",
            description="embedded: a small Latte for moving-shape prompts (8x24x24 RGB), no download; "
            "follows colour, shape and direction",
            defaults={"num_inference_steps": 20},
            pab=EMBEDDED_PAB,
            bundled=True,
        ),
        ModelSpec(
            name="latte",
            task="text-to-video",
            pipeline="videosys.models.pipelines.latte:LattePipeline",
            description="Latte-1 (maxin-cn/Latte-1 folder layout), T5 text encoder, DDIM",
            defaults={"num_frames": 16, "height": 512, "width": 512, "num_inference_steps": 50, "guidance_scale": 7.5},
            pab=LATTE_PAB,
        ),
        ModelSpec(
            name="opensora-1.2",
            task="text-to-video",
            pipeline="videosys.models.pipelines.opensora:OpenSoraPipeline",
            description="Open-Sora 1.2: STDiT3, VAE 1.2, T5, rectified flow; text, image or clip to video",
            defaults={
                "resolution": "480p",
                "aspect_ratio": "9:16",
                "duration": "2s",
                "num_inference_steps": 30,
                "guidance_scale": 7.0,
            },
            pab=OPENSORA_PAB,
            options=("aspect-ratio", "duration", "image", "video", "keep-frames"),
        ),
        *(
            ModelSpec(
                name=f"wan-2.1-t2v-{size}",
                task="text-to-video",
                pipeline="videosys.models.pipelines.wan:WanPipeline",
                description=f"Wan 2.1 T2V {size.upper()} (Wan-AI/Wan2.1-T2V-{size.upper()}-Diffusers folder layout), "
                "umT5, UniPC flow matching, Wan VAE",
                defaults={
                    "num_frames": 81,
                    "height": 480,
                    "width": 832,
                    "num_inference_steps": 50,
                    "guidance_scale": 5.0,
                },
                pab=WAN_PAB,
            )
            for size in ("1.3b", "14b")
        ),
        ModelSpec(
            name="opensora-plan-1.1",
            task="text-to-video",
            pipeline="videosys.models.pipelines.opensora_plan:OpenSoraPlanV11Pipeline",
            description="Open-Sora-Plan v1.1: Latte-like T2V (65 or 221 frames at 512x512), CausalVAE, T5, PNDM",
            defaults={"num_frames": 65, "height": 512, "width": 512, "num_inference_steps": 150, "guidance_scale": 7.5},
            pab=OPENSORA_PLAN_V11_PAB,
        ),
        ModelSpec(
            name="opensora-plan-1.2",
            task="text-to-video",
            pipeline="videosys.models.pipelines.opensora_plan:OpenSoraPlanV12Pipeline",
            description="Open-Sora-Plan v1.2: full 3-D attention T2V (29 or 93 frames at 480p or 720p), CausalVAE, "
            "mT5, EulerAncestral",
            defaults={
                "num_frames": 93,
                "height": 720,
                "width": 1280,
                "num_inference_steps": 100,
                "guidance_scale": 7.5,
            },
            pab=OPENSORA_PLAN_V12_PAB,
        ),
        ModelSpec(
            name="cogvideox-2b",
            task="text-to-video",
            pipeline="videosys.models.pipelines.cogvideox:CogVideoXPipeline",
            description="CogVideoX-2b (THUDM/CogVideoX-2b folder layout): joint text-video attention, T5, "
            "CogVideoX VAE, DDIM (v-prediction)",
            defaults={"num_frames": 49, "height": 480, "width": 720, "num_inference_steps": 50, "guidance_scale": 6.0},
            pab=COGVIDEOX_PAB,
        ),
        ModelSpec(
            name="cogvideox-5b",
            task="text-to-video",
            pipeline="videosys.models.pipelines.cogvideox:CogVideoXPipeline",
            description="CogVideoX-5b (THUDM/CogVideoX-5b folder layout): as 2b with 3-D RoPE, DPM, dynamic guidance",
            defaults={
                "num_frames": 49,
                "height": 480,
                "width": 720,
                "num_inference_steps": 50,
                "guidance_scale": 6.0,
                "use_dynamic_cfg": True,
            },
            pab=COGVIDEOX_PAB,
        ),
        ModelSpec(
            name="dit-xl-2-256",
            task="class-to-image",
            pipeline="videosys.models.pipelines.dit:DiTPipeline",
            description="DiT-XL/2 at 256x256 (facebook/DiT-XL-2-256 folder layout), ImageNet classes",
            defaults={"num_inference_steps": 50, "guidance_scale": 4.0},
            sample_size=32,
        ),
        ModelSpec(
            name="dit-xl-2-512",
            task="class-to-image",
            pipeline="videosys.models.pipelines.dit:DiTPipeline",
            description="DiT-XL/2 at 512x512 (facebook/DiT-XL-2-512 folder layout), ImageNet classes",
            defaults={"num_inference_steps": 50, "guidance_scale": 4.0},
            sample_size=64,
        ),
        ModelSpec(
            name="dit",
            task="class-to-image",
            pipeline="videosys.models.pipelines.dit:DiTPipeline",
            description="DiT of any size in the DiT-XL-2 folder layout, e.g. exported by videosys-train-export",
            defaults={"num_inference_steps": 50, "guidance_scale": 4.0},
        ),
    )
}


DEFAULT_MODEL: str = "videosys-tiny"
"""The model ``videosys generate`` uses without ``--model``: the embedded one, whose weights ship in the package."""


def list_models() -> list[str]:
    """Registered model names."""
    return sorted(MODELS)


def get_model(name: str) -> ModelSpec:
    """The spec registered as ``name`` (case-insensitive)."""
    spec = MODELS.get(name.lower())
    if spec is None:
        raise UnknownModelError(f"unknown model {name!r}; known models: {', '.join(list_models())}")
    return spec


def load(name: str, path: str | os.PathLike | None = None, **kwargs: Any) -> Any:
    """Load the pipeline of model ``name`` from the checkpoint folder ``path`` (kwargs: device, dtype, ...).

    ``path`` may be omitted only for a model whose weights ship with the package (``videosys-tiny``).
    """
    spec = get_model(name)
    if path is None and not spec.bundled:
        bundled = ", ".join(n for n, s in MODELS.items() if s.bundled)
        raise ValueError(f"model {spec.name} needs the path of its checkpoint folder; models that need none: {bundled}")
    pipeline = spec.pipeline_class().from_pretrained(path, **kwargs)
    size = pipeline.transformer.sample_size if spec.sample_size is not None else None
    if size != spec.sample_size:
        matching = [n for n, s in MODELS.items() if s.sample_size == size] or ["none is registered"]
        raise ValueError(
            f"{path} holds a model with latent size {size}, but {spec.name} has latent size {spec.sample_size}; "
            f"pick the matching model name ({', '.join(matching)})"
        )
    return pipeline
