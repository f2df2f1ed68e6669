"""Backbones on the VideoSys core interfaces, one module per model family."""

from .dit import DiTTransformer
from .latte import LatteBlock, LatteTransformer
from .opensora_plan_latte import OpenSoraPlanLatte
from .stdit3 import STDiT3, STDiT3Conditioning

__all__ = [
    "DiTTransformer",
    "LatteBlock",
    "LatteTransformer",
    "OpenSoraPlanLatte",
    "STDiT3",
    "STDiT3Conditioning",
]
