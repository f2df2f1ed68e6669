"""Backbones on the VideoSys core interfaces, one module per model family."""

from .cogvideox import CogVideoXBlock, CogVideoXTransformer
from .dit import DiTTransformer
from .latte import LatteBlock, LatteTransformer
from .opensora_plan_latte import OpenSoraPlanLatte
from .opensora_plan_t2v import OpenSoraPlanConditioning, OpenSoraPlanT2V
from .stdit3 import STDiT3, STDiT3Conditioning
from .wan import WanTransformer

__all__ = [
    "CogVideoXBlock",
    "CogVideoXTransformer",
    "DiTTransformer",
    "LatteBlock",
    "LatteTransformer",
    "OpenSoraPlanConditioning",
    "OpenSoraPlanLatte",
    "OpenSoraPlanT2V",
    "STDiT3",
    "STDiT3Conditioning",
    "WanTransformer",
]
