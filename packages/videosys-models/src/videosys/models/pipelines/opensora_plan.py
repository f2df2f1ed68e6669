"""Open-Sora-Plan v1.1 and v1.2 text to video: a release's transformer folder, CausalVAE, T5 / mT5, its sampler.

Both releases publish several transformers side by side (``65x512x512/``, ``221x512x512/``; ``29x480p/`` ..
``93x720p/``) next to one ``vae/``; the pipeline reads the one a ``variant`` names (the command line picks it
from ``--frames`` and ``--resolution``) and defaults to that variant's length and size. The text encoder is
published separately (``DeepFloyd/t5-v1_1-xxl``, ``google/mt5-xxl``); the weights folder holds it as
``text_encoder/`` and ``tokenizer/`` (the same folder may serve both, e.g. two links to one download).

Sampling follows the releases' sample scripts (PKU-YuanGroup/Open-Sora-Plan, ``opensora/sample/`` at tags
v1.1.0 and v1.2.0) and is checked against a loop written from them with the diffusers schedulers: prompts
lower-cased and stripped, guidance over the noise channels, the CausalVAE's latents scaled by 0.18215. Two
deliberate differences: the sampler's latents stay in float32 whatever the model's dtype (the originals keep
them in the text encoder's fp16/bf16), and ``num_frames`` must be 1 + 4k, the lengths the CausalVAE decodes to
exactly (the originals accept others and return fewer frames).
"""

from __future__ import annotations

import re
from abc import abstractmethod
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from ..loading import load_backbone
from ..text_encoders import PromptFeatures, encode_prompts, mask_features
from ..transformers import OpenSoraPlanLatte, OpenSoraPlanT2V
from ..vae.causal_vae import TILING_V1_1, TILING_V1_2, CausalVAE, CausalVAETiling
from .base import Component, ModelFn, OutputType, TextToVideoPipeline, negative_prompts_of, prompts_of
from .sampling import load_scheduler, make_generator, random_latents

__all__ = ["OpenSoraPlanPipeline", "OpenSoraPlanV11Pipeline", "OpenSoraPlanV12Pipeline", "release_components"]

LATENT_SCALE = 0.18215
"""Both releases' ``CausalVAEModelWrapper`` multiply the VAE's latents by it before the transformer sees them."""
TEMPORAL_FACTOR = 4
SPATIAL_FACTOR = 8
"""The CausalVAE's compression (4x8x8; the first frame is encoded alone)."""

V12_POSITIVE_TEMPLATE = "\n    (masterpiece), (best quality), (ultra-detailed), \n    {}. \n    "
"""The prompt template of v1.2.0's ``sample_t2v.py`` (whitespace included: the tokenizer sees it)."""
V12_NEGATIVE_PROMPT = (
    "\n    nsfw, lowres, bad anatomy, bad hands, text, error, missing fingers, extra digit, fewer digits, cropped, "
    "worst quality, \n    low quality, normal quality, jpeg artifacts, signature, watermark, username, blurry.\n    "
)
"""The negative prompt of v1.2.0's ``sample_t2v.py``."""


TRAINING_SCHEDULE = {
    "num_train_timesteps": 1000,
    "beta_start": 0.0001,
    "beta_end": 0.02,
    "beta_schedule": "linear",
    "prediction_type": "epsilon",
    "steps_offset": 0,
}
"""The noise schedule both releases trained with (DDPM's linear betas), shared by their samplers' configs."""


def release_components(encoder: str, encoder_folder: str, sampler: str) -> tuple[Component, ...]:
    """The entries beside a release's transformer folders: its VAE, the text encoder added to it, a sampler."""
    return (
        Component("vae", "config.json", "CausalVAE 4x8x8 of the release"),
        Component("text_encoder", "config.json", f"{encoder} encoder, {encoder_folder}"),
        Component("tokenizer", "tokenizer_config.json", f"{encoder} tokenizer, {encoder_folder}"),
        Component("scheduler", "scheduler_config.json", f"a diffusers sampler; default {sampler}", required=False),
    )


class OpenSoraPlanPipeline(TextToVideoPipeline):
    """What the two releases share: the variant sub-folders, the CausalVAE, the text encoder and the loop.

    A subclass names its release (:attr:`VARIANTS`, how a variant's name reads as a size), its backbone and
    sampler, and how text reaches the backbone (:meth:`_model_fn`).
    """

    fps = 24
    VARIANTS: ClassVar[tuple[str, ...]]
    """The transformer folders of the release; the first is the default."""
    BACKBONE: ClassVar[type[OpenSoraPlanLatte | OpenSoraPlanT2V]]
    BACKBONE_UPSTREAM: ClassVar[str]
    """The backbone's class name upstream, for messages."""
    TEXT_TOKENS: ClassVar[int]
    """Text tokens the release encodes each prompt to."""
    SCHEDULER: ClassVar[tuple[str, dict[str, Any]]]
    """The release's sampler: diffusers class name and the config its sample script builds it with (the
    defaults of diffusers at the time, spelled out so a later diffusers cannot change them)."""
    TILING: ClassVar[CausalVAETiling]
    """The CausalVAE tiling the release's sample script sets (``--enable_tiling``)."""
    STEPS: ClassVar[int]
    """Sampling steps of the release's sample scripts."""
    NEGATIVE_PROMPT: ClassVar[str] = ""
    """The unconditional text of guidance."""
    PROMPT_TEMPLATE: ClassVar[str] = "{}"
    """Where each prompt goes in the text the encoder reads."""

    def __init__(
        self, transformer: Any, vae: CausalVAE, text_encoder: Any, tokenizer: Any, scheduler: Any, variant: str
    ) -> None:
        super().__init__(transformer, vae, text_encoder, tokenizer, scheduler)
        self.variant = variant
        self.num_frames, self.height, self.width = self.variant_size(variant)

    # -- the release's folders ---------------------------------------------------------------------------------

    @classmethod
    @abstractmethod
    def variant_size(cls, variant: str) -> tuple[int, int, int]:
        """``(frames, height, width)`` a variant's folder name stands for, or ValueError."""

    @classmethod
    @abstractmethod
    def variant_of(cls, num_frames: int, height: int, width: int) -> str:
        """The folder name of a length and size, or ValueError naming the sizes the release's names use."""

    @classmethod
    def layout(cls) -> str:
        folders = ", ".join(f"{v}/" for v in cls.VARIANTS)
        return f"one of {folders} ({cls.BACKBONE_UPSTREAM}, picked by frames x resolution), {super().layout()}"

    @classmethod
    def components_for(cls, options: dict[str, Any]) -> tuple[Component, ...]:
        variant = options.get("variant", cls.VARIANTS[0])
        frames, height, width = cls.variant_size(variant)
        return (Component(variant, "config.json", f"{cls.BACKBONE_UPSTREAM}, {frames} frames at {width}x{height}"),)

    @classmethod
    def _sizes(cls, call: dict[str, Any]) -> tuple[int, int, int]:
        """``(frames, height, width)`` of call arguments (the default variant's where None), checked."""
        default = cls.variant_size(cls.VARIANTS[0])
        names = ("num_frames", "height", "width")
        frames, height, width = (call[n] if call.get(n) is not None else d for n, d in zip(names, default, strict=True))
        if frames < 1 or (frames - 1) % TEMPORAL_FACTOR:
            raise ValueError(
                f"num_frames {frames}: expected 1 + {TEMPORAL_FACTOR}k frames (1, 5, 9, ..., 29, 65, 93), "
                "the lengths the CausalVAE decodes to"
            )
        if height < SPATIAL_FACTOR or width < SPATIAL_FACTOR or height % SPATIAL_FACTOR or width % SPATIAL_FACTOR:
            raise ValueError(f"height and width must be positive multiples of {SPATIAL_FACTOR}, got {height}x{width}")
        return frames, height, width

    @classmethod
    def load_options(cls, call: dict[str, Any]) -> dict[str, Any]:
        """``{"variant": ...}``: the folder whose name is the call's length and size."""
        return {"variant": cls.variant_of(*cls._sizes(call))}

    @classmethod
    def check_call(cls, call: dict[str, Any]) -> None:
        super().check_call(call)
        cls._sizes(call)

    @classmethod
    def default_scheduler(cls) -> Any:
        import diffusers

        name, config = cls.SCHEDULER
        return getattr(diffusers, name).from_config(config)

    @classmethod
    def load(
        cls,
        root: Path,
        *,
        device: torch.device,
        dtype: torch.dtype,
        allow_bin: bool,
        variant: str | None = None,
        tiling: bool = True,
    ) -> OpenSoraPlanPipeline:
        """Read the ``variant`` transformer (default: the first of :attr:`VARIANTS`), ``vae/``, the text encoder
        and, if the folder has one, ``scheduler/`` (else the release's sampler); all in ``dtype``.
        ``tiling`` decodes in tiles with the release's settings (they leave small videos whole)."""
        variant = variant or cls.VARIANTS[0]
        vae = CausalVAE.from_pretrained(root / "vae", dtype=dtype, device=device, allow_bin=allow_bin)
        if tiling:
            vae.enable_tiling(cls.TILING)
        return cls(
            transformer=load_backbone(cls.BACKBONE, root / variant, dtype=dtype, device=device, allow_bin=allow_bin),
            vae=vae,
            scheduler=load_scheduler(root / "scheduler") if (root / "scheduler").is_dir() else cls.default_scheduler(),
            variant=variant,
            **cls.load_text(root, device=device, dtype=dtype, allow_bin=allow_bin),
        )

    # -- sampling ----------------------------------------------------------------------------------------------

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Float videos ``(B, 3, 1 + 4(T - 1), H, W)`` from sampled (scaled) latents ``(B, 4, T, h, w)``."""
        return self.vae.decode((latents / LATENT_SCALE).to(self.vae_dtype)).float()

    def encode_prompt(self, prompts: list[str], negatives: list[str], guided: bool) -> PromptFeatures:
        """Text features of the prompts and, when ``guided``, of their negative prompts (:attr:`TEXT_TOKENS` each)."""
        negatives_or_none = negatives if guided else None
        return encode_prompts(self.tokenizer, self.text_encoder, prompts, negatives_or_none, self.TEXT_TOKENS)

    @abstractmethod
    def _model_fn(self, text: PromptFeatures) -> ModelFn:
        """``model_fn(x, t)`` for :meth:`Pipeline.denoise`: the backbone given the text its release gives it."""

    @torch.no_grad()
    def __call__(
        self,
        prompt: str | list[str],
        *,
        negative_prompt: str | list[str] | None = None,
        prompt_template: str | None = None,
        num_frames: int | None = None,
        height: int | None = None,
        width: int | None = None,
        num_inference_steps: int | None = None,
        guidance_scale: float = 7.5,
        seed: int | None = None,
        generator: torch.Generator | None = None,
        output_type: OutputType = "frames",
        progress: bool = True,
    ) -> list[np.ndarray] | torch.Tensor:
        """Generate one video per prompt: ``num_frames`` (1 + 4k) at ``height`` x ``width``, the loaded variant's
        where None. Each prompt is put into ``prompt_template`` (``"{}"``: the prompt alone). None takes the
        release's :attr:`NEGATIVE_PROMPT`, :attr:`PROMPT_TEMPLATE` and :attr:`STEPS`. ``output_type``:
        ``"frames"`` (uint8 ``(T, H, W, 3)`` arrays), ``"latent"`` or ``"video"`` (floats ``(B, 3, T, H, W)`` in
        about [-1, 1])."""
        prompts = prompts_of(prompt)
        template = self.PROMPT_TEMPLATE if prompt_template is None else prompt_template
        if "{}" not in template:
            raise ValueError(f"prompt_template must hold '{{}}' where the prompt goes, got {template!r}")
        prompts = [template.format(p) for p in prompts]
        negatives = negative_prompts_of(
            self.NEGATIVE_PROMPT if negative_prompt is None else negative_prompt, len(prompts)
        )
        num_inference_steps = self.STEPS if num_inference_steps is None else num_inference_steps
        self.check_output_type(output_type)
        asked = {"num_frames": num_frames, "height": height, "width": width}
        own = dict(zip(asked, (self.num_frames, self.height, self.width), strict=True))
        frames, height, width = self._sizes({k: own[k] if v is None else v for k, v in asked.items()})
        factor = SPATIAL_FACTOR * self.transformer.patch_size
        if height % factor or width % factor:
            raise ValueError(
                f"height and width must be multiples of {factor} for this transformer, got {height}x{width}"
            )
        from diffusers import PNDMScheduler

        if isinstance(self.scheduler, PNDMScheduler) and not self.scheduler.config.skip_prk_steps:
            if num_inference_steps < 4:
                raise ValueError(
                    f"num_inference_steps {num_inference_steps}: the PNDM sampler needs at least 4 (its Runge-Kutta "
                    "warm-up takes 4 steps)"
                )
        generator = make_generator(seed, generator)
        guided = guidance_scale > 1.0
        text = self.encode_prompt(prompts, negatives, guided)
        shape = (len(prompts), *self.vae.latent_shape(frames, height, width))
        latents = random_latents(shape, generator, self.device, torch.float32)
        latents = self.denoise(
            self._model_fn(text),
            latents,
            num_inference_steps,
            guidance_scale=guidance_scale,
            guided_channels=shape[1],
            generator=generator,
            progress=progress,
        )
        return self.finish(latents, output_type)


class OpenSoraPlanV11Pipeline(OpenSoraPlanPipeline):
    """Open-Sora-Plan v1.1. Defaults: the variant's length at 512x512 (65 frames), 150 PNDM steps, cfg 7.5, 24 fps.

    Text as the release's ``VideoGenPipeline``: 300 T5 tokens, the negative prompt ``""``, Latte-1's "mask
    feature" (a single prompt's features cut to its real tokens, a batch's padding zeroed; no text mask); a
    single frame is sampled with temporal attention off, as the release's image script does (``--force_images``).
    """

    OFFICIAL = "LanguageBind/Open-Sora-Plan-v1.1.0"
    VARIANTS = ("65x512x512", "221x512x512")
    BACKBONE = OpenSoraPlanLatte
    BACKBONE_UPSTREAM = "LatteT2V"
    TEXT_TOKENS = 300
    CUDA_DTYPE = torch.float16  # the release samples every part in float16
    SCHEDULER = (
        "PNDMScheduler",
        {**TRAINING_SCHEDULE, "skip_prk_steps": False, "set_alpha_to_one": False, "timestep_spacing": "leading"},
    )
    TILING = TILING_V1_1
    STEPS = 150
    COMPONENTS = release_components("T5 v1.1 XXL", "DeepFloyd/t5-v1_1-xxl", "PNDM")
    _NAME = re.compile(r"^(\d+)x(\d+)x(\d+)$")

    @classmethod
    def variant_size(cls, variant: str) -> tuple[int, int, int]:
        match = cls._NAME.match(variant)
        if match is None:
            raise ValueError(
                f"variant {variant!r}: expected a transformer folder named FRAMESxHEIGHTxWIDTH, as the release's "
                f"{', '.join(cls.VARIANTS)}"
            )
        frames, height, width = (int(g) for g in match.groups())
        return frames, height, width

    @classmethod
    def variant_of(cls, num_frames: int, height: int, width: int) -> str:
        return f"{num_frames}x{height}x{width}"

    def _model_fn(self, text: PromptFeatures) -> ModelFn:
        features, negative = mask_features(text.features, text.mask, text.negative)
        context = features if negative is None else torch.cat([features, negative])
        model_dtype = self.dtype

        def model_fn(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            temporal = x.shape[2] > 1  # the release samples images with --force_images: temporal attention off
            return self.transformer(x.to(model_dtype), t, context.to(model_dtype), enable_temporal_attentions=temporal)

        return model_fn


class OpenSoraPlanV12Pipeline(OpenSoraPlanPipeline):
    """Open-Sora-Plan v1.2. Defaults: the variant's length and size (93 frames at 1280x720), 100 EulerAncestral
    steps, cfg 7.5, 24 fps.

    Text as the release's ``sample_t2v.py``: the prompt inside its "(masterpiece), (best quality), ..." template,
    its negative prompt, 512 mT5 tokens, the text mask handed to the transformer.
    """

    OFFICIAL = "LanguageBind/Open-Sora-Plan-v1.2.0"
    VARIANTS = ("93x720p", "93x480p", "29x720p", "29x480p")
    BACKBONE = OpenSoraPlanT2V
    BACKBONE_UPSTREAM = "OpenSoraT2V"
    TEXT_TOKENS = 512
    CUDA_DTYPE = torch.bfloat16  # the release samples every part in bfloat16
    RESOLUTIONS: ClassVar[dict[str, tuple[int, int]]] = {"480p": (480, 640), "720p": (720, 1280)}
    SCHEDULER = ("EulerAncestralDiscreteScheduler", {**TRAINING_SCHEDULE, "timestep_spacing": "linspace"})
    TILING = TILING_V1_2
    STEPS = 100
    NEGATIVE_PROMPT = V12_NEGATIVE_PROMPT
    PROMPT_TEMPLATE = V12_POSITIVE_TEMPLATE
    COMPONENTS = release_components("mT5-XXL", "google/mt5-xxl", "EulerAncestral")
    _NAME = re.compile(r"^(\d+)x(\d+p)$")

    @classmethod
    def variant_size(cls, variant: str) -> tuple[int, int, int]:
        match = cls._NAME.match(variant)
        if match is None or match.group(2) not in cls.RESOLUTIONS:
            raise ValueError(
                f"variant {variant!r}: expected a transformer folder named FRAMESxRESOLUTION with a resolution of "
                f"{', '.join(cls.RESOLUTIONS)}, as the release's {', '.join(cls.VARIANTS)}"
            )
        return int(match.group(1)), *cls.RESOLUTIONS[match.group(2)]

    @classmethod
    def variant_of(cls, num_frames: int, height: int, width: int) -> str:
        names = {size: name for name, size in cls.RESOLUTIONS.items()}
        if (height, width) not in names:
            sizes = ", ".join(f"{name} ({w}x{h})" for name, (h, w) in cls.RESOLUTIONS.items())
            raise ValueError(f"Open-Sora-Plan v1.2's transformer folders are for {sizes}, not {width}x{height}")
        return f"{num_frames}x{names[height, width]}"

    def _model_fn(self, text: PromptFeatures) -> ModelFn:
        guided = text.negative is not None
        context = torch.cat([text.features, text.negative]) if guided else text.features
        mask = torch.cat([text.mask, text.negative_mask]) if guided else text.mask
        return self.text_model_fn(context, encoder_attention_mask=mask)
