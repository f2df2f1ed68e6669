"""VideoSys PAB: Pyramid Attention Broadcast for spatial-temporal video DiTs (arXiv 2408.12588).

Attention outputs change little between middle diffusion steps, so each attention kind is computed
every ``interval`` steps inside a window and its branch output reused in between: spatial attention
most often, cross-attention least (the "pyramid"). Training-free; works on any backbone built on the
:mod:`videosys.core` interfaces, whose branches are recognised by the axis they declare::

    from videosys.pab import Broadcast, PABConfig, pab

    config = PABConfig(
        spatial=Broadcast(2, window=(450, 930)),
        temporal=Broadcast(4, window=(450, 930)),
        cross=Broadcast(6, window=(450, 930)),
    )
    with pab(model, config):
        video = sample(model)  # each step inside videosys.core.denoising_step(...)
"""

from .api import disable, enable, is_enabled, pab, stats
from .config import Broadcast, MLPReuse, PABConfig

__version__ = "0.1.0"

__all__ = [
    "Broadcast",
    "MLPReuse",
    "PABConfig",
    "disable",
    "enable",
    "is_enabled",
    "pab",
    "stats",
]
