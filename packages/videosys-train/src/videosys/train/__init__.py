"""VideoSys train: ColossalAI training with DSP sequence parallelism."""

__version__ = "0.1.0"
