"""Backbones on the VideoSys core interfaces, one module per model family."""

from .dit import DiTTransformer
from .latte import LatteBlock, LatteTransformer

__all__ = ["DiTTransformer", "LatteBlock", "LatteTransformer"]
