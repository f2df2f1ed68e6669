"""VideoSys DSP: Dynamic Sequence Parallelism for spatial-temporal video DiTs.

``parallelize(model)`` shards any :class:`~videosys.core.STBackbone`'s tokens over a torch.distributed
group along one axis; an attention over that axis switches the sharded axis with one all-to-all,
attends, and switches back (arXiv 2403.10266). ``mode="ulysses"`` runs the same model with DeepSpeed-
Ulysses around every self-attention instead, the baseline. :func:`comm_stats` counts the bytes moved.
"""

from .collectives import gather, split, switch
from .comm import CommCount, comm_stats, reset_comm_stats, total_bytes
from .parallel import (
    MODES,
    Mode,
    SequenceParallel,
    average_gradients,
    deparallelize,
    parallelize,
    sequence_parallel,
)

__version__ = "0.1.0"

__all__ = [
    "CommCount",
    "MODES",
    "Mode",
    "SequenceParallel",
    "average_gradients",
    "comm_stats",
    "deparallelize",
    "gather",
    "parallelize",
    "reset_comm_stats",
    "sequence_parallel",
    "split",
    "switch",
    "total_bytes",
]
