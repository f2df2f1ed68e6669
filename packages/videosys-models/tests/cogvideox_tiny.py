"""Tiny CogVideoX configs and inputs shared by the CogVideoX tests and their spawned ranks."""

from __future__ import annotations

from pathlib import Path

import torch
from conftest import randomize, tiny_t5, tiny_tokenizer

# 2b flavour: 3-D sin-cos positions, whose table covers exactly max_text_seq_length text tokens.
TINY_2B = {
    "num_attention_heads": 2,
    "attention_head_dim": 16,
    "in_channels": 4,
    "out_channels": 4,
    "time_embed_dim": 24,
    "text_embed_dim": 20,
    "num_layers": 2,
    "sample_width": 10,
    "sample_height": 6,
    "sample_frames": 9,
    "max_text_seq_length": 7,
    "spatial_interpolation_scale": 1.875,
    "temporal_interpolation_scale": 1.0,
    "use_rotary_positional_embeddings": False,
}
# 5b flavour: 3-D RoPE (head dim 16 splits 4 / 6 / 6), trained grid 6 x 9, any text length.
TINY_5B = {**TINY_2B, "sample_width": 18, "sample_height": 12, "use_rotary_positional_embeddings": True}
# Sequence-parallel flavour: 6 heads divide over 2 and 3 ranks.
TINY_5B_DSP = {**TINY_5B, "num_attention_heads": 6}


def save_reference(folder: Path, config: dict, seed: int = 0) -> torch.nn.Module:
    """A random diffusers ``CogVideoXTransformer3DModel`` saved to ``folder``; returns it."""
    import diffusers

    model = diffusers.CogVideoXTransformer3DModel(**config).eval()
    randomize(model, seed)
    model.save_pretrained(folder, safe_serialization=True)
    return model


def inputs(frames: int, height: int, width: int, text: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Latents ``(2, 4, T, H, W)`` (our layout) and text features ``(2, L, 20)``."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(2, 4, frames, height, width, generator=g), torch.randn(2, text, 20, generator=g)


def _scheduler(flavour: str):
    """The published folders' schedulers (THUDM/CogVideoX-2b / -5b ``scheduler_config.json``)."""
    import diffusers

    config = {
        "num_train_timesteps": 1000,
        "beta_start": 0.00085,
        "beta_end": 0.012,
        "beta_schedule": "scaled_linear",
        "clip_sample": False,
        "prediction_type": "v_prediction",
        "rescale_betas_zero_snr": True,
        "set_alpha_to_one": True,
        "steps_offset": 0,
        "timestep_spacing": "trailing",
    }
    if flavour == "2b":
        return diffusers.CogVideoXDDIMScheduler.from_config({**config, "snr_shift_scale": 3.0})
    return diffusers.CogVideoXDPMScheduler.from_config({**config, "snr_shift_scale": 1.0})


def tiny_vae():
    """A CogVideoX VAE with 4 latent channels, 4x spatial and 4x temporal compression."""
    import diffusers

    torch.manual_seed(0)
    return diffusers.AutoencoderKLCogVideoX(
        down_block_types=("CogVideoXDownBlock3D",) * 3,
        up_block_types=("CogVideoXUpBlock3D",) * 3,
        block_out_channels=(8, 8, 8),
        latent_channels=4,
        layers_per_block=1,
        norm_num_groups=4,
        temporal_compression_ratio=4,
        sample_height=16,
        sample_width=24,
    ).eval()


def save_folder(root: Path, flavour: str) -> Path:
    """A complete tiny ``THUDM/CogVideoX-<flavour>`` folder written by diffusers' ``CogVideoXPipeline``."""
    import diffusers

    config = TINY_2B if flavour == "2b" else TINY_5B
    transformer = diffusers.CogVideoXTransformer3DModel(**config).eval()
    randomize(transformer, seed=3)
    tokenizer = tiny_tokenizer()
    pipe = diffusers.CogVideoXPipeline(
        tokenizer=tokenizer,
        text_encoder=tiny_t5(len(tokenizer), config["text_embed_dim"]),
        vae=tiny_vae(),
        transformer=transformer,
        scheduler=_scheduler(flavour),
    )
    pipe.save_pretrained(root, safe_serialization=True)
    return root
