"""VideoSys PAB: Pyramid Attention Broadcast for spatial-temporal video DiTs."""

__version__ = "0.1.0"
