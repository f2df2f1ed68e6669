"""``videosys-tiny``, the embedded default text-to-video model: a small Latte whose weights ship in this package.

``EmbeddedPipeline.from_pretrained()`` needs no path and no download; ``pipeline("a red circle moving
left", seed=0)[0]`` is a uint8 ``(8, 24, 24, 3)`` clip. Trained with videosys-train on the shapes grammar
(``a [small|large] <colour> <shape> moving <direction> [slowly|quickly]``): see the docs' default-model page.
"""

from .backbone import EMBEDDED_SIZES, build_backbone
from .pipeline import WEIGHTS, EmbeddedPipeline, read_weights, write_weights
from .text import UnknownWordError, WordEncoder, words_of

__all__ = [
    "EMBEDDED_SIZES",
    "WEIGHTS",
    "EmbeddedPipeline",
    "UnknownWordError",
    "WordEncoder",
    "build_backbone",
    "read_weights",
    "words_of",
    "write_weights",
]
