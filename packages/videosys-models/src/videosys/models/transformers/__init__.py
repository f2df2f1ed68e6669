"""Backbones on the VideoSys core interfaces, one module per model family."""

from .cogvideox import CogVideoXBlock, CogVideoXTransformer
from .dit import DiTTransformer
from .latte import LatteBlock, LatteTransformer
from .stdit3 import STDiT3, STDiT3Conditioning

__all__ = [
    "CogVideoXBlock",
    "CogVideoXTransformer",
    "DiTTransformer",
    "LatteBlock",
    "LatteTransformer",
    "STDiT3",
    "STDiT3Conditioning",
]
