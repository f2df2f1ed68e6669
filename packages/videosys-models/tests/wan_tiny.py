"""A tiny diffusers ``WanTransformer3DModel`` (random weights, no download), shared by the Wan tests and workers.

Head dim 16 gives Wan's unequal RoPE split (frames 8, rows 4, columns 4); latents of 3 frames and 6x10
(token grid 3 x 3 x 5) make T and H != W, none a power of two.
"""

from __future__ import annotations

import pytest
import torch

TINY_WAN = {
    "patch_size": (1, 2, 2),
    "num_attention_heads": 2,
    "attention_head_dim": 16,
    "in_channels": 4,
    "out_channels": 4,
    "text_dim": 24,
    "freq_dim": 32,
    "ffn_dim": 40,
    "num_layers": 2,
    "cross_attn_norm": True,
    "qk_norm": "rms_norm_across_heads",
    "eps": 1e-6,
    "rope_max_seq_len": 64,
}
"""Head dim 16: RoPE gives frames 8 channels, rows and columns 4 each (Wan's unequal split)."""

LATENT_SHAPE = (4, 3, 6, 10)
"""(C, T, H, W) of the tiny latents: token grid 3 x 3 x 5."""
TEXT_TOKENS = 7


def wan_reference_class():
    """diffusers' WanTransformer3DModel, or skip: it arrived in diffusers 0.33 (ColossalAI pins 0.29.0)."""
    diffusers = pytest.importorskip("diffusers")
    cls = getattr(diffusers, "WanTransformer3DModel", None)
    if cls is None:
        pytest.skip(f"diffusers {diffusers.__version__} has no WanTransformer3DModel (added in 0.33)")
    return cls


def randomize(model: torch.nn.Module, seed: int) -> None:
    """Overwrite every parameter (tables, norms and zero-initialised ones too) so no path is trivial."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            param.copy_(torch.randn(param.shape, generator=generator) * 0.3)


def wan_inputs(batch: int = 2, seed: int = 0, real_tokens: tuple[int, ...] = (7, 4)):
    """Latents, timesteps (different per sample) and umT5-like text zero-padded after ``real_tokens`` tokens."""
    g = torch.Generator().manual_seed(seed)
    latents = torch.randn(batch, *LATENT_SHAPE, generator=g)
    text = torch.randn(batch, TEXT_TOKENS, TINY_WAN["text_dim"], generator=g)
    for i, n in enumerate(real_tokens[:batch]):
        text[i, n:] = 0  # the Wan pipeline zero-pads the umT5 features
    t = torch.tensor([999.0, 301.5, 17.0, 640.0][:batch])
    return latents, t, text


def build_wan_reference(folder, seed: int = 0, **overrides):
    """A randomised tiny diffusers Wan saved to ``folder`` with ``save_pretrained``; returns the model."""
    model = wan_reference_class()(**{**TINY_WAN, **overrides}).eval()
    randomize(model, seed)
    model.save_pretrained(folder, safe_serialization=True)
    return model
