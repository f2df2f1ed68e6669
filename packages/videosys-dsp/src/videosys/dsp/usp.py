"""USP: FULL attention over a sequence-parallel group split as Ulysses (heads) x ring (sequence).

Ulysses needs the head count to divide the group size and sends everything through all-to-alls that
span the group; ring attention works at any head count with point-to-point sends. USP (Fang and Zhao,
arXiv 2405.07719) splits the ``N`` ranks as ``U x R``: an all-to-all inside each Ulysses group of ``U``
consecutive ranks (one node under torchrun, whose local ranks are consecutive) exchanges sequence for
heads, and ring attention runs across the ``R`` groups. ``U = N`` is plain Ulysses, ``U = 1`` plain ring.

Bytes per attention and rank, forward, with ``M`` the size of q (the tokens' activations): the Ulysses
all-to-alls move ``4 M/N`` (q, k, v, out; none when ``U = 1``), the ring ``2 (R-1) M/N``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
import torch.distributed as dist
import torch.nn.functional as F

from videosys.core import AttentionAxis, from_sequences, to_sequences

from .collectives import switch
from .masks import whole_video_mask
from .ring import ring_attention

__all__ = ["FULL_ATTENTION", "FullAttention", "USPLayout", "plan_usp"]

FullAttention = Literal["usp", "ulysses", "ring"]
Rotate = Callable[..., tuple[torch.Tensor, torch.Tensor]]
"""``rotate(q, k, start=(frame, token))``: an attention's :meth:`~videosys.core.VideoAttention.rotate`, grid bound."""
FULL_ATTENTION: tuple[str, ...] = ("usp", "ulysses", "ring")
HEAD_DIM = 3  # heads in the (B, T, S, H, D) query/key/value layout


@dataclass(frozen=True)
class USPLayout:
    """How one FULL attention splits the group: ``ulysses`` x ``ring`` ranks, with this rank's two subgroups."""

    ulysses: int
    ring: int
    ulysses_group: dist.ProcessGroup | None
    """This rank's Ulysses group (None when ``ulysses == 1``)."""
    ring_group: dist.ProcessGroup | None
    """This rank's ring group (None when ``ring == 1``)."""

    def __deepcopy__(self, memo: dict) -> USPLayout:
        """Copies of a parallelized model share the process groups."""
        return self

    def attend(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        mask: torch.Tensor | None,
        *,
        dim: int,
        length: int,
        scale: float | None,
        rotate: Rotate | None = None,
    ) -> torch.Tensor:
        """FULL attention of ``(B, T, S, H, D)`` shards along ``dim`` (``length`` unpadded) over the whole video.

        ``mask`` is the whole video's key mask (broadcastable to ``(B, T, S)``) or None; padding keys
        are masked out here. ``rotate(q, k, start=(frame, token))`` applies the attention's rotary
        embedding to the ring shard, given where it starts in the video (the mix it replaces would have).
        Returns this rank's shard of the output, ``(B, T, S_local, H, D)``.
        """
        if self.ulysses > 1:
            q, k, v = (switch(t, HEAD_DIM, dim, self.ulysses_group, pad=False, kind="ulysses") for t in (q, k, v))
        if rotate is not None:
            start = [0, 0]
            start[dim - 1] = (dist.get_rank(self.ring_group) if self.ring > 1 else 0) * q.shape[dim]
            q, k = rotate(q, k, start=tuple(start))
        b, t, s = q.shape[:3]
        key_mask = self._key_mask(mask, (b, t, s), dim, length, q.device)
        fold = (to_sequences(x, AttentionAxis.FULL) for x in (q, k, v))
        out = from_sequences(ring_attention(*fold, key_mask, self.ring_group, scale=scale), AttentionAxis.FULL, b, t, s)
        if self.ulysses > 1:
            out = switch(out, dim, HEAD_DIM, self.ulysses_group, kind="ulysses")
        return out

    def _key_mask(
        self, mask: torch.Tensor | None, chunk_shape: tuple[int, int, int], dim: int, length: int, device: torch.device
    ) -> torch.Tensor | None:
        """The ring's key mask: the whole video's, padding masked out, as ``R`` chunks along ``dim`` (ring order)."""
        padded = chunk_shape[dim] * self.ring
        if mask is None and padded == length:
            return None
        video = list(chunk_shape)
        video[dim] = length
        video = tuple(video)
        whole = torch.ones(video, dtype=torch.bool, device=device) if mask is None else whole_video_mask(mask, video)
        widths = [0, 0] * (2 - dim) + [0, padded - length]
        whole = F.pad(whole, widths, value=False)
        chunks = whole.chunk(self.ring, dim=dim)
        return torch.cat([chunk.flatten(1) for chunk in chunks], dim=1)


def usp_sizes(heads: int, ranks: int, full_attention: str, ulysses_size: int | None, where: str) -> tuple[int, int]:
    """``(U, R)`` for a FULL attention with ``heads`` heads on ``ranks`` ranks; raise naming what would work."""
    if full_attention not in FULL_ATTENTION:
        raise ValueError(
            f"unknown full_attention {full_attention!r}; expected one of {', '.join(map(repr, FULL_ATTENTION))}"
        )
    if ulysses_size is not None and full_attention != "usp":
        raise ValueError(f"ulysses_size={ulysses_size} applies to full_attention='usp', not {full_attention!r}")
    if full_attention == "ring":
        return 1, ranks
    if full_attention == "ulysses":
        if heads % ranks:
            raise ValueError(
                f"{where} (full attention) has {heads} heads, which do not divide by the {ranks} ranks of the group: "
                f"Ulysses gives each rank heads/N heads; use a group size that divides {heads}, or allow the ring "
                f"with full_attention='usp' (Ulysses over {math.gcd(heads, ranks)} x ring) or 'ring'"
            )
        return ranks, 1
    ulysses = math.gcd(heads, ranks) if ulysses_size is None else ulysses_size
    if ulysses < 1 or ranks % ulysses or heads % ulysses:
        raise ValueError(
            f"ulysses_size={ulysses} does not fit {where} (full attention): it must divide both the {ranks} ranks "
            f"of the group and the {heads} heads; the widest that does is {math.gcd(heads, ranks)}"
        )
    return ulysses, ranks // ulysses


_groups: dict[tuple[tuple[int, ...], int], tuple[dist.ProcessGroup | None, dist.ProcessGroup | None]] = {}


def plan_usp(
    group: dist.ProcessGroup, heads: int, full_attention: str = "usp", ulysses_size: int | None = None, where: str = ""
) -> USPLayout:
    """The :class:`USPLayout` of a FULL attention with ``heads`` heads over ``group``.

    ``"usp"`` makes Ulysses as wide as the heads allow (``gcd(heads, N)``, or ``ulysses_size``) and a ring
    of the rest; ``"ulysses"`` and ``"ring"`` force one. Group ranks ``i`` with the same ``i // U`` form a
    Ulysses group, those with the same ``i % U`` a ring. Subgroups are created once per layout (only their
    members take part, so data-parallel replicas may plan their own groups independently).
    """
    ranks = dist.get_world_size(group)
    ulysses, ring = usp_sizes(heads, ranks, full_attention, ulysses_size, where or f"an attention with {heads} heads")
    if ulysses == 1 or ring == 1:
        return USPLayout(ulysses, ring, group if ring == 1 else None, group if ulysses == 1 else None)
    members = tuple(dist.get_process_group_ranks(group))
    key = (members, ulysses)
    if key not in _groups:
        rank = dist.get_rank(group)
        node, local = divmod(rank, ulysses)
        _groups[key] = (
            dist.new_group([members[node * ulysses + i] for i in range(ulysses)], use_local_synchronization=True),
            dist.new_group([members[local + i * ulysses] for i in range(ring)], use_local_synchronization=True),
        )
    return USPLayout(ulysses, ring, *_groups[key])
