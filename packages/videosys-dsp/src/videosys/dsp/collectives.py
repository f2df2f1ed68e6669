"""Autograd-aware collectives over a sequence-parallel process group.

- :func:`split`: keep this rank's slice of an axis (no communication); backward all-gathers.
- :func:`gather`: all-gather the slices of an axis; backward keeps this rank's slice.
- :func:`replicate`: all-gather the slices of a dimension for consumers that each hold a partial share of
  the loss (a joint attention's text heads); backward sums the ranks' gradients of each slice.
- :func:`switch`: one all-to-all that shards another dimension instead (a DSP switch between two
  axes, or Ulysses' sequence <-> heads exchange); backward is the reverse switch.

An axis whose length does not divide by the group size is zero-padded at its end before it is
sharded, and trimmed back to its exact length where it is gathered whole again.

Gradient convention: every rank of the group computes the same loss from the gathered output.
``gather``'s backward multiplies this rank's slice of the gradient by ``N`` and ``split``'s backward
divides the gathered gradient by ``N``, so that *averaging* parameter gradients over the group (what
DDP or :func:`~videosys.dsp.average_gradients` does) gives exactly the single-process gradients, for
parameters before, between and after the split and the gather alike.

Everything is built on ``dist.all_to_all_single`` and ``dist.all_gather``, which NCCL and gloo
provide from torch 2.5 on.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F

from . import comm

__all__ = ["gather", "group_rank", "group_size", "padded_length", "replicate", "resolve_group", "split", "switch"]

ProcessGroup = dist.ProcessGroup


def resolve_group(group: ProcessGroup | None) -> ProcessGroup:
    """``group``, or the default (WORLD) group; raise when torch.distributed is not initialised."""
    if not dist.is_available() or not dist.is_initialized():
        raise RuntimeError(
            "videosys.dsp needs torch.distributed: launch with `torchrun --nproc_per_node N ...` and call "
            "torch.distributed.init_process_group() ('nccl' on GPU, 'gloo' on CPU) before parallelize()"
        )
    return dist.group.WORLD if group is None else group


def group_size(group: ProcessGroup | None) -> int:
    return dist.get_world_size(resolve_group(group))


def group_rank(group: ProcessGroup | None) -> int:
    return dist.get_rank(resolve_group(group))


def padded_length(length: int, ranks: int) -> int:
    """The smallest multiple of ``ranks`` that holds ``length``."""
    return -(-length // ranks) * ranks


def _pad_dim(x: torch.Tensor, dim: int, ranks: int, pad: bool, what: str) -> torch.Tensor:
    """Zero-pad ``x`` along ``dim`` to a multiple of ``ranks`` (or raise when padding is not allowed)."""
    length = x.shape[dim]
    target = padded_length(length, ranks)
    if target == length:
        return x
    if not pad:
        raise ValueError(
            f"{what} has length {length}, which does not divide by the {ranks} ranks of the sequence-parallel "
            f"group and padding is not allowed here; use a length divisible by {ranks}"
            + (" or a smaller group" if length < ranks else "")
        )
    widths = [0, 0] * (x.dim() - dim - 1) + [0, target - length]
    return F.pad(x, widths)


def _all_to_all(x: torch.Tensor, scatter_dim: int, gather_dim: int, group: ProcessGroup, kind: str) -> torch.Tensor:
    """Send chunk ``j`` of ``scatter_dim`` to rank ``j``; concatenate the received chunks along ``gather_dim``."""
    ranks = dist.get_world_size(group)
    chunk = x.shape[scatter_dim] // ranks
    send = x.unflatten(scatter_dim, (ranks, chunk)).movedim(scatter_dim, 0).contiguous()
    received = torch.empty_like(send)
    comm.record(kind, send)
    dist.all_to_all_single(received, send, [1] * ranks, [1] * ranks, group=group)
    # received[i] came from rank i: its shard of gather_dim, and our chunk of scatter_dim.
    return received.movedim(0, gather_dim).flatten(gather_dim, gather_dim + 1)


class _Switch(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, scatter_dim: int, gather_dim: int, group: ProcessGroup, kind: str):
        ctx.dims, ctx.group, ctx.kind = (scatter_dim, gather_dim), group, kind
        return _all_to_all(x, scatter_dim, gather_dim, group, kind)

    @staticmethod
    def backward(ctx, grad):
        scatter_dim, gather_dim = ctx.dims
        return _all_to_all(grad, gather_dim, scatter_dim, ctx.group, f"{ctx.kind}.backward"), None, None, None, None


def _all_gather_cat(x: torch.Tensor, dim: int, group: ProcessGroup, kind: str) -> torch.Tensor:
    x = x.contiguous()
    parts = [torch.empty_like(x) for _ in range(dist.get_world_size(group))]
    comm.record(kind, x)
    dist.all_gather(parts, x, group=group)
    return torch.cat(parts, dim=dim)


def _local_slice(x: torch.Tensor, dim: int, group: ProcessGroup) -> torch.Tensor:
    chunk = x.shape[dim] // dist.get_world_size(group)
    return x.narrow(dim, dist.get_rank(group) * chunk, chunk).contiguous()


class _Split(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, dim: int, group: ProcessGroup):
        ctx.dim, ctx.group = dim, group
        return _local_slice(x, dim, group)

    @staticmethod
    def backward(ctx, grad):
        ranks = dist.get_world_size(ctx.group)
        return _all_gather_cat(grad, ctx.dim, ctx.group, "split.backward") / ranks, None, None


class _Gather(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, dim: int, group: ProcessGroup):
        ctx.dim, ctx.group = dim, group
        return _all_gather_cat(x, dim, group, "gather")

    @staticmethod
    def backward(ctx, grad):
        return _local_slice(grad, ctx.dim, ctx.group) * dist.get_world_size(ctx.group), None, None


class _Replicate(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, dim: int, group: ProcessGroup, kind: str):
        ctx.dim, ctx.group, ctx.kind = dim, group, kind
        return _all_gather_cat(x, dim, group, kind)

    @staticmethod
    def backward(ctx, grad):
        # Reduce-scatter on all_to_all_single: slice j of every rank's gradient goes to rank j, which sums them.
        ranks = dist.get_world_size(ctx.group)
        send = grad.unflatten(ctx.dim, (ranks, -1)).movedim(ctx.dim, 0).contiguous()
        received = torch.empty_like(send)
        comm.record(f"{ctx.kind}.backward", send)
        dist.all_to_all_single(received, send, group=ctx.group)
        return received.sum(0), None, None, None


def split(x: torch.Tensor, dim: int, group: ProcessGroup | None = None, *, pad: bool = True) -> torch.Tensor:
    """This rank's slice of ``x`` along ``dim``, zero-padded at the end to ``N`` equal slices."""
    group = resolve_group(group)
    dim = dim % x.dim()
    x = _pad_dim(x, dim, dist.get_world_size(group), pad, f"dim {dim} of shape {tuple(x.shape)}")
    return _Split.apply(x, dim, group)


def gather(x: torch.Tensor, dim: int, length: int, group: ProcessGroup | None = None) -> torch.Tensor:
    """All ranks' slices of ``dim`` concatenated in rank order and trimmed to ``length`` (inverse of :func:`split`)."""
    group = resolve_group(group)
    dim = dim % x.dim()
    whole = _Gather.apply(x, dim, group)
    if not 0 < length <= whole.shape[dim]:
        raise ValueError(f"cannot trim gathered dim {dim} of length {whole.shape[dim]} to {length}")
    return whole.narrow(dim, 0, length)


def replicate(x: torch.Tensor, dim: int, group: ProcessGroup | None = None, *, kind: str = "replicate") -> torch.Tensor:
    """Every rank's equal slice of ``dim`` concatenated in rank order, on every rank.

    Unlike :func:`gather` (whose consumers compute the same loss on every rank), the consumers here are
    replicated computations that each carry a *partial* gradient (each rank's share through its own tokens),
    so backward sums the ranks' gradients of this rank's slice. ``kind`` labels the bytes.
    """
    group = resolve_group(group)
    return _Replicate.apply(x, dim % x.dim(), group, kind)


def switch(
    x: torch.Tensor,
    scatter_dim: int,
    gather_dim: int,
    group: ProcessGroup | None = None,
    *,
    length: int | None = None,
    pad: bool = True,
    kind: str = "switch",
) -> torch.Tensor:
    """Shard ``scatter_dim`` instead of ``gather_dim`` with one all-to-all.

    ``scatter_dim`` is whole on every rank (zero-padded to a multiple of ``N`` when ``pad``), ``gather_dim``
    holds this rank's slice; the result holds this rank's slice of ``scatter_dim`` and all of ``gather_dim``,
    trimmed to ``length`` (the unpadded length) when given. ``kind`` labels the bytes in
    :func:`~videosys.dsp.comm_stats`. Backward is the reverse switch.
    """
    group = resolve_group(group)
    ranks = dist.get_world_size(group)
    scatter_dim, gather_dim = scatter_dim % x.dim(), gather_dim % x.dim()
    if scatter_dim == gather_dim:
        raise ValueError(f"switch needs two different dims, got scatter_dim == gather_dim == {scatter_dim}")
    x = _pad_dim(x, scatter_dim, ranks, pad, f"dim {scatter_dim} of shape {tuple(x.shape)}")
    out = _Switch.apply(x, scatter_dim, gather_dim, group, kind)
    if length is not None and length != out.shape[gather_dim]:
        if not 0 < length <= out.shape[gather_dim]:
            raise ValueError(f"cannot trim switched dim {gather_dim} of length {out.shape[gather_dim]} to {length}")
        out = out.narrow(gather_dim, 0, length)
    return out
