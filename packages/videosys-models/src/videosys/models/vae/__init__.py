"""Video autoencoders the models package implements itself (those diffusers lacks): Open-Sora 1.2's VAE and
Open-Sora-Plan's CausalVAE."""

from .causal_vae import LATENT_SCALE, TILING_V1_1, TILING_V1_2, CausalVAE, CausalVAEConfig, CausalVAETiling
from .opensora_vae import SDXL_VAE_CONFIG, OpenSoraVAE, OpenSoraVAEConfig
from .temporal_vae import TemporalVAE, TemporalVAEConfig

__all__ = [
    "LATENT_SCALE",
    "SDXL_VAE_CONFIG",
    "TILING_V1_1",
    "TILING_V1_2",
    "CausalVAE",
    "CausalVAEConfig",
    "CausalVAETiling",
    "OpenSoraVAE",
    "OpenSoraVAEConfig",
    "TemporalVAE",
    "TemporalVAEConfig",
]
