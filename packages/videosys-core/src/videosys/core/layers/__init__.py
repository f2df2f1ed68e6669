"""Layers shared by every model family, written once."""

from .embeddings import (
    AxisEmbedding,
    CaptionProjection,
    LabelEmbedder,
    TimestepEmbedder,
    sincos_1d,
    sincos_2d,
    timestep_embedding,
)
from .final import FinalLayer
from .mlp import FeedForward, gelu_tanh
from .modulation import modulate, split_modulation
from .norm import NormKind, RMSNorm, make_norm
from .patch import PatchEmbed2D, PatchEmbed3D, unpatchify
from .rope import GridRotaryEmbedding, Rotary, RotaryEmbedding

__all__ = [
    "AxisEmbedding",
    "CaptionProjection",
    "FeedForward",
    "FinalLayer",
    "GridRotaryEmbedding",
    "LabelEmbedder",
    "NormKind",
    "PatchEmbed2D",
    "PatchEmbed3D",
    "RMSNorm",
    "Rotary",
    "RotaryEmbedding",
    "TimestepEmbedder",
    "gelu_tanh",
    "make_norm",
    "modulate",
    "sincos_1d",
    "sincos_2d",
    "split_modulation",
    "timestep_embedding",
    "unpatchify",
]
