"""Text-to-video and class-to-image pipelines: text encoder, backbone, scheduler and VAE from one folder."""

from .dit import DiTPipeline
from .latte import LattePipeline
from .sampling import denoise

__all__ = ["DiTPipeline", "LattePipeline", "denoise"]
