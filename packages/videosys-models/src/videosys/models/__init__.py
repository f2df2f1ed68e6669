"""VideoSys models: Latte-1, DiT and Open-Sora 1.2's STDiT3 on the core interfaces, loading the official checkpoints.

``videosys.models.load("videosys-tiny")`` is the embedded default model (weights in the package, no path);
``pipeline = videosys.models.load("latte", path)``; ``frames = pipeline(prompt)[0]``;
``videosys.core.io.save_video(frames, "out.mp4")``. Backbones live in
:mod:`videosys.models.transformers`, pipelines in :mod:`videosys.models.pipelines` (they import
diffusers and transformers on first use).
"""

from .loading import CheckpointError, load_backbone
from .pab_defaults import (
    COGVIDEOX_PAB,
    EMBEDDED_PAB,
    LATTE_PAB,
    OPENSORA_PAB,
    OPENSORA_PLAN_V11_PAB,
    OPENSORA_PLAN_V12_PAB,
    WAN_PAB,
)
from .registry import MODELS, ModelSpec, UnknownModelError, get_model, list_models, load
from .schedulers import RectifiedFlow
from .text_encoders import T5TextEncoder
from .transformers import (
    CogVideoXTransformer,
    DiTTransformer,
    LatteTransformer,
    OpenSoraPlanLatte,
    OpenSoraPlanT2V,
    STDiT3,
    WanTransformer,
)
from .vae import CausalVAE, OpenSoraVAE

__version__ = "0.1.0"

__all__ = [
    "COGVIDEOX_PAB",
    "EMBEDDED_PAB",
    "LATTE_PAB",
    "MODELS",
    "CausalVAE",
    "CheckpointError",
    "CogVideoXTransformer",
    "DiTTransformer",
    "LatteTransformer",
    "OpenSoraPlanLatte",
    "OpenSoraPlanT2V",
    "STDiT3",
    "ModelSpec",
    "OPENSORA_PAB",
    "OPENSORA_PLAN_V11_PAB",
    "OPENSORA_PLAN_V12_PAB",
    "OpenSoraVAE",
    "RectifiedFlow",
    "T5TextEncoder",
    "UnknownModelError",
    "WAN_PAB",
    "WanTransformer",
    "get_model",
    "list_models",
    "load",
    "load_backbone",
]
