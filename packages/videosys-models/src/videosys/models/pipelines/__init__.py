"""Text-to-video and class-to-image pipelines on one base: components from one folder, one denoising loop."""

from .base import (
    Component,
    FrameCondition,
    IncompleteWeightsError,
    Pipeline,
    TextToVideoPipeline,
    negative_prompts_of,
    prompts_of,
)
from .cogvideox import CogVideoXPipeline
from .dit import DiTPipeline
from .latte import LattePipeline
from .opensora import OpenSoraPipeline
from .opensora_plan import OpenSoraPlanPipeline, OpenSoraPlanV11Pipeline, OpenSoraPlanV12Pipeline
from .wan import WanPipeline

__all__ = [
    "CogVideoXPipeline",
    "Component",
    "DiTPipeline",
    "FrameCondition",
    "IncompleteWeightsError",
    "LattePipeline",
    "OpenSoraPipeline",
    "OpenSoraPlanPipeline",
    "OpenSoraPlanV11Pipeline",
    "OpenSoraPlanV12Pipeline",
    "Pipeline",
    "TextToVideoPipeline",
    "WanPipeline",
    "negative_prompts_of",
    "prompts_of",
]
