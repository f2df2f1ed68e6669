"""Backbones on the VideoSys core interfaces, one module per model family."""

from .dit import DiTTransformer
from .latte import LatteBlock, LatteTransformer
from .stdit3 import STDiT3, STDiT3Conditioning
from .wan import WanTransformer

__all__ = ["DiTTransformer", "LatteBlock", "LatteTransformer", "STDiT3", "STDiT3Conditioning", "WanTransformer"]
