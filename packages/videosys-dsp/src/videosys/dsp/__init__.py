"""VideoSys DSP: Dynamic Sequence Parallelism for spatial-temporal video DiTs."""

__version__ = "0.1.0"
