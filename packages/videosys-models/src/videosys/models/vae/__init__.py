"""Video autoencoders the models package implements itself (those diffusers lacks): Open-Sora 1.2's VAE."""

from .opensora_vae import SDXL_VAE_CONFIG, OpenSoraVAE, OpenSoraVAEConfig
from .temporal_vae import TemporalVAE, TemporalVAEConfig

__all__ = ["SDXL_VAE_CONFIG", "OpenSoraVAE", "OpenSoraVAEConfig", "TemporalVAE", "TemporalVAEConfig"]
