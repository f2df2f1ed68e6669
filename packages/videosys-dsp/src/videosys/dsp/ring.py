"""Ring attention: attention over a sequence sharded across a group, without gathering it anywhere.

Each rank keeps its query shard; the key/value shards travel around the ring (rank ``r`` sends to
``r + 1``), the next hop in flight while the current block is attended. Each block's partial output is
merged with the running one through their log-sum-exps (:func:`merge_partials`), in float32 (float64
for float64 inputs), so the result equals softmax attention over all keys for fp32, bf16 and fp16 inputs alike.

Backward recomputes every block from the saved global log-sum-exp (no attention matrix is kept) and
passes the key/value gradients around the ring with the blocks, so they arrive home after one more hop:
no rank ever holds more than two blocks of keys. The backward's block step is plain matmuls in float32 (one
``Lq x Lk/R`` score block at a time), on every backend.

Per attention and per rank, with ``M/R`` the size of one q, k or v shard: forward sends k and v
``R - 1`` times, ``2 (R-1) M/R``; backward sends k and v ``R - 1`` times and their float32 gradients
``R`` times.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from videosys.core.attention import accumulation_dtype, attention_with_lse

from . import comm

__all__ = ["merge_partials", "ring_attention"]

_NEG_INF = float("-inf")


def merge_partials(
    out: torch.Tensor, lse: torch.Tensor, block_out: torch.Tensor, block_lse: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Merge two softmax-attention results over disjoint key sets: ``(out, lse)`` of their union.

    ``out`` tensors are ``(N, L, H, D)``, ``lse`` ``(N, H, L)``, all in one dtype, float32 or wider. A row
    with no key in a part (``lse = -inf``) takes the other part; rows with no key in either stay ``out = 0``,
    ``lse = -inf``.
    """
    merged = torch.logaddexp(lse, block_lse)
    finite = merged.masked_fill(merged == _NEG_INF, 0.0)
    weight, block_weight = (torch.exp(x - finite).transpose(1, 2).unsqueeze(-1) for x in (lse, block_lse))
    return weight * out + block_weight * block_out, merged


class _Shift:
    """Send tensors to the next rank of the ring and receive the previous rank's, asynchronously."""

    def __init__(self, tensors: list[torch.Tensor], group: dist.ProcessGroup, kind: str) -> None:
        ranks, rank = dist.get_world_size(group), dist.get_rank(group)
        send_to = dist.get_global_rank(group, (rank + 1) % ranks)
        receive_from = dist.get_global_rank(group, (rank - 1) % ranks)
        tensors = [t.contiguous() for t in tensors]
        self.received = [torch.empty_like(t) for t in tensors]
        ops = []
        for tensor, received in zip(tensors, self.received):
            comm.record(kind, tensor)
            ops += [
                dist.P2POp(dist.isend, tensor, send_to, group),
                dist.P2POp(dist.irecv, received, receive_from, group),
            ]
        self.works = dist.batch_isend_irecv(ops)

    def wait(self) -> list[torch.Tensor]:
        for work in self.works:
            work.wait()
        return self.received


def _block_mask(key_mask: torch.Tensor | None, block: int, length: int) -> torch.Tensor | None:
    return None if key_mask is None else key_mask[:, block * length : (block + 1) * length]


def _block_grads(q, k, v, mask, grad_out, lse, delta, scale):
    """Gradients of one key block, recomputed (float32 or wider) from the global ``lse``, as flash-attention does.

    All tensors ``(N, H, L, D)`` (``lse`` and ``delta = rowsum(dO * O)`` are ``(N, H, Lq)``).
    """
    scores = torch.matmul(q, k.transpose(-1, -2)) * scale
    if mask is not None:
        scores = scores.masked_fill(~mask[:, None, None, :], _NEG_INF)
    probs = torch.exp(scores - lse.masked_fill(lse == _NEG_INF, 0.0).unsqueeze(-1))
    grad_v = torch.matmul(probs.transpose(-1, -2), grad_out)
    grad_scores = probs * (torch.matmul(grad_out, v.transpose(-1, -2)) - delta.unsqueeze(-1)) * scale
    return torch.matmul(grad_scores, k), torch.matmul(grad_scores.transpose(-1, -2), q), grad_v


class _RingAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, key_mask, group, scale):
        ranks, rank = dist.get_world_size(group), dist.get_rank(group)
        length = k.shape[1]
        n, q_len, heads = q.shape[:3]
        acc = accumulation_dtype(q.dtype)
        out = q.new_zeros(n, q_len, heads, v.shape[-1], dtype=acc)
        lse = q.new_full((n, heads, q_len), _NEG_INF, dtype=acc)
        block_k, block_v = k, v
        for step in range(ranks):
            shift = _Shift([block_k, block_v], group, "ring") if step < ranks - 1 else None
            block = (rank - step) % ranks
            block_out, block_lse = attention_with_lse(
                q, block_k, block_v, _block_mask(key_mask, block, length), scale=scale
            )
            out, lse = merge_partials(out, lse, block_out.to(acc), block_lse)
            if shift is not None:
                block_k, block_v = shift.wait()
        out = out.to(q.dtype)
        ctx.save_for_backward(q, k, v, key_mask, out, lse)
        ctx.group, ctx.scale = group, scale
        return out

    @staticmethod
    def backward(ctx, grad_out):
        q, k, v, key_mask, out, lse = ctx.saved_tensors
        group, scale = ctx.group, ctx.scale
        ranks, rank = dist.get_world_size(group), dist.get_rank(group)
        length = k.shape[1]
        acc = accumulation_dtype(q.dtype)
        q32, grad32 = (t.to(acc).transpose(1, 2) for t in (q, grad_out))
        delta = (grad_out.to(acc) * out.to(acc)).sum(-1).transpose(1, 2)
        grad_q = torch.zeros_like(q32)
        block_k, block_v = k, v
        grads = None  # this step's block's k/v gradients, accumulated along the ring
        for step in range(ranks):
            shift = _Shift([block_k, block_v], group, "ring.backward") if step < ranks - 1 else None
            block = (rank - step) % ranks
            k32, v32 = (t.to(acc).transpose(1, 2) for t in (block_k, block_v))
            mask = _block_mask(key_mask, block, length)
            dq, dk, dv = _block_grads(q32, k32, v32, mask, grad32, lse, delta, scale)
            grad_q += dq
            if grads is not None:
                previous_dk, previous_dv = grads.wait()
                dk, dv = dk + previous_dk, dv + previous_dv
            grads = _Shift([dk, dv], group, "ring.backward") if ranks > 1 else None
            if shift is not None:
                block_k, block_v = shift.wait()
        if grads is not None:  # one more hop brings each block's gradients home
            dk, dv = grads.wait()
        grad_q, grad_k, grad_v = (g.transpose(1, 2).to(t.dtype) for g, t in ((grad_q, q), (dk, k), (dv, v)))
        return grad_q, grad_k, grad_v, None, None, None


def ring_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    key_mask: torch.Tensor | None,
    group: dist.ProcessGroup,
    *,
    scale: float | None = None,
) -> torch.Tensor:
    """Attention of this rank's queries over the keys of every rank of ``group``; returns ``(N, L, H, D)``.

    ``q``, ``k``, ``v`` are this rank's shards ``(N, L, H, D)``, the same ``L`` on every rank, the
    sequence being the rank-order concatenation of the shards. ``key_mask`` (boolean, True = attend)
    covers that whole sequence, ``(N, R * L)``, identical on every rank (so it never travels); use it for
    padding keys. The attention step runs through :func:`~videosys.core.attention_with_lse`, hence the
    backend :func:`~videosys.core.attention_backend` selects.
    """
    ranks = dist.get_world_size(group)
    if q.dim() != 4 or k.dim() != 4:
        raise ValueError(f"ring attention takes (N, L, H, D) shards, got q {tuple(q.shape)}, k {tuple(k.shape)}")
    if key_mask is not None and (key_mask.dtype != torch.bool or key_mask.shape != (q.shape[0], ranks * k.shape[1])):
        raise ValueError(
            f"ring attention's key mask must be boolean ({q.shape[0]}, {ranks * k.shape[1]}) (the whole sequence "
            f"of {ranks} shards of {k.shape[1]} keys), got {key_mask.dtype} of shape {tuple(key_mask.shape)}"
        )
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    return _RingAttention.apply(q, k, v, key_mask, group, scale)
