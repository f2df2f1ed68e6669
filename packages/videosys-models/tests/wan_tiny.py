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


WAN_SCHEDULER = {
    "num_train_timesteps": 1000,
    "prediction_type": "flow_prediction",
    "use_flow_sigmas": True,
    "flow_shift": 3.0,
    "solver_order": 2,
    "solver_type": "bh2",
    "predict_x0": True,
    "lower_order_final": True,
    "final_sigmas_type": "zero",
    "timestep_spacing": "linspace",
}
"""The flow-matching fields of Wan2.1-T2V-1.3B-Diffusers' ``scheduler/scheduler_config.json`` (UniPC)."""


def tiny_wan_vae():
    """A tiny random ``AutoencoderKLWan`` (temporal factor 4, spatial factor 8) with per-channel latent stats."""
    import diffusers

    torch.manual_seed(0)
    z = TINY_WAN["in_channels"]
    return diffusers.AutoencoderKLWan(
        base_dim=4,
        z_dim=z,
        dim_mult=[1, 1, 1, 1],
        num_res_blocks=1,
        temperal_downsample=[False, True, True],
        latents_mean=[0.1 * i for i in range(z)],
        latents_std=[1.0 + 0.5 * i for i in range(z)],
    ).eval()


def tiny_umt5(vocab_size: int):
    from transformers import UMT5Config, UMT5EncoderModel

    torch.manual_seed(0)
    width = TINY_WAN["text_dim"]
    config = UMT5Config(vocab_size=vocab_size, d_model=width, d_ff=2 * width, d_kv=8, num_layers=1, num_heads=2)
    return UMT5EncoderModel(config).eval()


def save_wan_folder(root, tokenizer):
    """A complete tiny Wan 2.1 folder, saved by diffusers' ``WanPipeline`` in the official layout; returns that
    pipeline (loading it back needs ``accelerate``, for the modules diffusers keeps in float32)."""
    import diffusers

    transformer = wan_reference_class()(**TINY_WAN).eval()
    randomize(transformer, seed=6)
    pipe = diffusers.WanPipeline(
        tokenizer=tokenizer,
        text_encoder=tiny_umt5(len(tokenizer)),
        vae=tiny_wan_vae(),
        transformer=transformer,
        scheduler=diffusers.UniPCMultistepScheduler.from_config(WAN_SCHEDULER),
    )
    pipe.save_pretrained(root, safe_serialization=True)
    return pipe
