"""VideoSys models: Latte-1 and DiT on the VideoSys core interfaces, loading the official checkpoints.

``videosys.models.load("videosys-tiny")`` is the embedded default model (weights in the package, no path);
``pipeline = videosys.models.load("latte", path)``; ``frames = pipeline(prompt)[0]``;
``videosys.core.io.save_video(frames, "out.mp4")``. Backbones live in
:mod:`videosys.models.transformers`, pipelines in :mod:`videosys.models.pipelines` (they import
diffusers and transformers on first use).
"""

from .loading import CheckpointError, load_backbone
from .pab_defaults import EMBEDDED_PAB, LATTE_PAB, PABDefaults
from .registry import MODELS, ModelSpec, UnknownModelError, get_model, list_models, load
from .transformers import DiTTransformer, LatteTransformer

__version__ = "0.1.0"

__all__ = [
    "EMBEDDED_PAB",
    "LATTE_PAB",
    "MODELS",
    "CheckpointError",
    "DiTTransformer",
    "LatteTransformer",
    "ModelSpec",
    "PABDefaults",
    "UnknownModelError",
    "get_model",
    "list_models",
    "load",
    "load_backbone",
]
