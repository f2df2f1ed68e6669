"""Tiny reference models built with diffusers (random weights, no download) and saved in the official layout."""

from __future__ import annotations

import pytest
import torch

diffusers = pytest.importorskip("diffusers")

TINY_LATTE = {
    "num_attention_heads": 2,
    "attention_head_dim": 8,
    "in_channels": 4,
    "out_channels": 8,
    "num_layers": 2,
    "cross_attention_dim": 16,
    "attention_bias": True,
    "sample_size": 8,
    "patch_size": 2,
    "activation_fn": "gelu-approximate",
    "num_embeds_ada_norm": 1000,
    "norm_type": "ada_norm_single",
    "norm_elementwise_affine": False,
    "norm_eps": 1e-6,
    "caption_channels": 32,
    "video_length": 4,
}

TINY_DIT = {
    "num_attention_heads": 2,
    "attention_head_dim": 8,
    "in_channels": 4,
    "out_channels": 8,
    "num_layers": 2,
    "sample_size": 8,
    "patch_size": 2,
    "num_embeds_ada_norm": 1000,
}


def randomize(model: torch.nn.Module, seed: int) -> None:
    """Overwrite every parameter, including the zero-initialised ones, so no branch is trivially zero."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            param.copy_(torch.randn(param.shape, generator=generator) * 0.3)


def tie_dit_embedders(model: torch.nn.Module) -> None:
    """Copy block 0's timestep/class embedders into every block, as the official DiT conversion does."""
    shared = model.transformer_blocks[0].norm1.emb.state_dict()
    for block in model.transformer_blocks[1:]:
        block.norm1.emb.load_state_dict(shared)


def latte_reference_class():
    """diffusers' LatteTransformer3DModel, or skip: it arrived in diffusers 0.30 (ColossalAI pins 0.29.0)."""
    cls = getattr(diffusers, "LatteTransformer3DModel", None)
    if cls is None:
        pytest.skip(f"diffusers {diffusers.__version__} has no LatteTransformer3DModel (added in 0.30)")
    return cls


@pytest.fixture
def latte_reference(tmp_path):
    """(diffusers model, its saved transformer/ folder)."""
    model = latte_reference_class()(**TINY_LATTE).eval()
    randomize(model, seed=0)
    folder = tmp_path / "transformer"
    model.save_pretrained(folder, safe_serialization=True)
    return model, folder


def build_dit(seed: int, tie: bool = True) -> torch.nn.Module:
    """A tiny random diffusers DiT; ``tie`` shares the block embedders as the published checkpoints do."""
    model = diffusers.DiTTransformer2DModel(**TINY_DIT).eval()
    randomize(model, seed)
    if tie:
        tie_dit_embedders(model)
    return model


@pytest.fixture
def make_dit():
    """``build_dit`` as a fixture (tests run with --import-mode=importlib and cannot import conftest)."""
    return build_dit


@pytest.fixture
def dit_reference(tmp_path):
    model = build_dit(seed=1)
    folder = tmp_path / "transformer"
    model.save_pretrained(folder, safe_serialization=True)
    return model, folder
