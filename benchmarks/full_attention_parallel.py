"""FULL (3-D) attention over a sequence-parallel group: Ulysses vs ring vs USP, bytes moved and wall clock.

    torchrun --nproc_per_node 4 benchmarks/full_attention_parallel.py             # CPU (gloo) or GPUs (NCCL)
    python benchmarks/full_attention_parallel.py                  # launches itself: every GPU, or 2 CPU ranks
    torchrun --nproc_per_node 4 benchmarks/full_attention_parallel.py --backward  # training steps

The same weights and inputs run round-robin in one run under each way of parallelizing FULL attention
(``parallelize(..., full_attention=...)``): ``ulysses`` (heads all-to-all, needs heads % N == 0),
``ring`` (k/v shards passed around all N ranks) and, from 4 ranks on, ``usp`` (Ulysses over 2 ranks x ring
over N/2), plus the unparallelized model on rank 0 alone. Bytes are what this rank passes into collectives
per step (``videosys.dsp.comm``), next to the closed forms per FULL attention, with M/N one rank's share of
the activations: forward Ulysses 4 M/N, ring 2 (R-1) M/N, USP (U x R) both; backward Ulysses 4 M/N, ring
(4R - 2) M/N (k, v R-1 hops; their fp32 gradients R hops, so twice that for half-precision inputs); plus
M/N for the final gather (forward) and the split's gradient all-gather (backward).
"""

from __future__ import annotations

import argparse
import copy
import os

import torch
import torch.distributed as dist
from dsp_vs_ulysses import PROXY_CONTEXT_DIM, PROXY_IN_DIM, init_ranks, proxy_inputs, relaunch, round_robin
from torch import nn

from videosys.core import AdaLNBlock, Conditioning, STBackbone
from videosys.core.layers import FinalLayer, TimestepEmbedder
from videosys.dsp import parallelize


class FullDiT(STBackbone):
    """adaLN blocks with full 3-D self-attention (qk-norm) and cross-attention, as in Open-Sora-Plan v1.2 / Wan."""

    def __init__(self, dim: int, heads: int, depth: int, in_dim: int, context_dim: int) -> None:
        super().__init__()
        self.proj_in = nn.Linear(in_dim, dim)
        self.t_embedder = TimestepEmbedder(dim)
        self.t_block = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))
        block = {"cross_attention": True, "context_dim": context_dim, "qk_norm": "rms"}
        self.blocks = nn.ModuleList(AdaLNBlock(dim, heads, "full", **block) for _ in range(depth))
        self.final = FinalLayer(dim, in_dim)

    def embed(self, tokens: torch.Tensor, t: torch.Tensor, context: torch.Tensor) -> tuple[torch.Tensor, Conditioning]:
        t_emb = self.t_embedder(t, dtype=tokens.dtype)
        return self.proj_in(tokens), Conditioning(modulation=self.t_block(t_emb), context=context, extras={"t": t_emb})

    def head(self, x: torch.Tensor, cond: Conditioning) -> torch.Tensor:
        return self.final(x, cond.extras["t"])


def layouts(ranks: int) -> dict[str, tuple[dict, int, int]]:
    """Name -> (parallelize options, Ulysses size U, ring size R)."""
    found = {"ulysses": ({"full_attention": "ulysses"}, ranks, 1), "ring": ({"full_attention": "ring"}, 1, ranks)}
    if ranks >= 4 and ranks % 2 == 0:
        found[f"usp 2x{ranks // 2}"] = ({"full_attention": "usp", "ulysses_size": 2}, 2, ranks // 2)
    return found


def closed_form(ulysses: int, ring: int, depth: int, backward: bool) -> int:
    """Bytes per step in units of M/N (FULL attentions plus the gather, or the split's backward)."""
    ring_hops = 0 if ring == 1 else (4 * ring - 2 if backward else 2 * (ring - 1))
    per_attention = (4 if ulysses > 1 else 0) + ring_hops
    return per_attention * depth + 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=8, help="latent frames T")
    parser.add_argument("--tokens", type=int, default=64, help="spatial tokens per frame S")
    parser.add_argument("--dim", type=int, default=192)
    parser.add_argument("--heads", type=int, default=12, help="12: Wan 2.1 1.3B's head count")
    parser.add_argument("--depth", type=int, default=4, help="FULL-attention blocks")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per mode")
    parser.add_argument("--backward", action="store_true", help="time forward + backward (training) steps")
    args = parser.parse_args()
    if "RANK" not in os.environ:  # not under torchrun: relaunch under it
        relaunch(__file__)
        return
    rank, ranks, device, dtype = init_ranks()
    cuda = device.type == "cuda"

    torch.manual_seed(0)  # same weights and inputs on every rank
    model = FullDiT(args.dim, args.heads, args.depth, PROXY_IN_DIM, PROXY_CONTEXT_DIM).to(device, dtype)
    inputs = proxy_inputs(args.batch, args.frames, args.tokens, device, dtype)
    plans = layouts(ranks)
    if args.heads % ranks:
        del plans["ulysses"]  # Ulysses cannot split the heads: the case ring and USP exist for
    models = {name: parallelize(copy.deepcopy(model), **options) for name, (options, _, _) in plans.items()}
    models["1 rank"] = model

    sent, median, max_diff = round_robin(models, plans, inputs, args.backward, device, args.steps)
    if rank != 0:
        dist.destroy_process_group()
        return

    shard = args.batch * args.frames * args.tokens * args.dim * dtype.itemsize / ranks  # M/N bytes
    mib = 2**20
    kind = "forward + backward" if args.backward else "forward"
    print(
        f"{ranks} ranks, {device.type} ({'NCCL' if cuda else 'gloo'}), {dtype}; B={args.batch} T={args.frames} "
        f"S={args.tokens} C={args.dim} heads={args.heads}, {args.depth} FULL-attention blocks; M/N = "
        f"{shard / mib:.3f} MiB; {kind} steps, median of {args.steps}"
    )
    print(
        f"{'layout':<12}{'U x R':>7}{'fwd MiB':>9}{'closed':>9}{'bwd MiB':>9}{'closed':>9}"
        f"{'s/step':>9}{'vs 1 rank':>10}{'max |diff|':>12}"
    )
    for name in models:
        line = f"{name:<12}"
        if name in plans:
            _, ulysses, ring = plans[name]
            forward, backward, _ = sent[name]
            line += f"{f'{ulysses}x{ring}':>7}{forward / mib:>9.2f}"
            line += f"{closed_form(ulysses, ring, args.depth, False) * shard / mib:>9.2f}"
            line += f"{backward / mib:>9.2f}"
            line += (
                f"{closed_form(ulysses, ring, args.depth, True) * shard / mib:>9.2f}" if args.backward else f"{'-':>9}"
            )
        else:
            line += f"{'-':>7}{'-':>9}{'-':>9}{'-':>9}{'-':>9}"
        line += f"{median[name]:>9.3f}{median['1 rank'] / median[name]:>9.2f}x"
        line += f"{max_diff[name]:>12.2e}" if name in plans else f"{'-':>12}"
        print(line)
    if device.type == "cpu" and ranks > (os.cpu_count() or 1):
        print(f"note: {ranks} ranks on {os.cpu_count()} CPU cores oversubscribe them; times compare layouts only")
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
