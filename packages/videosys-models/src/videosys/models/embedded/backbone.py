"""The embedded model's backbone: a small Latte (no new architecture), sized to train on two CPU cores."""

from __future__ import annotations

from typing import Any

from ..transformers import LatteTransformer

__all__ = ["EMBEDDED_SIZES", "build_backbone"]

EMBEDDED_SIZES: dict[str, Any] = {
    "num_layers": 2,
    "num_heads": 4,
    "head_dim": 16,
    "in_channels": 3,
    "out_channels": 3,
    "patch_size": 4,
    "sample_size": 24,
    "caption_channels": 32,
    "video_length": 8,
}
"""RGB pixels (no VAE): 8 frames of 24x24, 4x4 patches (36 tokens a frame), width 64, two block pairs."""


def build_backbone(**overrides: Any) -> LatteTransformer:
    """A :class:`LatteTransformer` of :data:`EMBEDDED_SIZES` with ``overrides``; the training config's factory."""
    unknown = sorted(set(overrides) - set(EMBEDDED_SIZES) - {"attention_bias", "norm_eps"})
    if unknown:
        raise ValueError(f"unknown backbone size(s) {unknown}; expected some of {sorted(EMBEDDED_SIZES)}")
    return LatteTransformer(**{**EMBEDDED_SIZES, **overrides})
