"""VideoSys models: Open-Sora, Open-Sora-Plan, Latte and DiT on the VideoSys core interfaces."""

__version__ = "0.1.0"
