"""VideoSys DSP: Dynamic Sequence Parallelism for spatial-temporal video DiTs.

``parallelize(model)`` shards any :class:`~videosys.core.STBackbone`'s tokens over a torch.distributed
group along one axis; an attention over that axis switches the sharded axis with one all-to-all,
attends, and switches back (arXiv 2403.10266). ``mode="ulysses"`` runs the same model with DeepSpeed-
Ulysses around every self-attention instead, the baseline. FULL attention runs as USP: Ulysses over heads
x ring attention over the sequence, at any head count. :func:`comm_stats` counts the bytes moved.
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
from .ring import merge_partials, ring_attention
from .usp import FULL_ATTENTION, FullAttention, USPLayout, plan_usp

__version__ = "0.1.0"

__all__ = [
    "CommCount",
    "FULL_ATTENTION",
    "FullAttention",
    "MODES",
    "Mode",
    "SequenceParallel",
    "USPLayout",
    "average_gradients",
    "comm_stats",
    "deparallelize",
    "gather",
    "merge_partials",
    "parallelize",
    "plan_usp",
    "reset_comm_stats",
    "ring_attention",
    "sequence_parallel",
    "split",
    "switch",
    "total_bytes",
]
