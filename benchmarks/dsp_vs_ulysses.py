"""DSP vs DeepSpeed-Ulysses vs one rank on the same STDiT-shaped backbone: bytes moved and wall clock.

    torchrun --nproc_per_node 2 benchmarks/dsp_vs_ulysses.py            # CPU (gloo) or GPUs (NCCL)
    python benchmarks/dsp_vs_ulysses.py                                 # launches itself: every GPU, or 2 CPU ranks
    torchrun --nproc_per_node 2 benchmarks/dsp_vs_ulysses.py --backward # training steps

Every mode runs the same weights on the same inputs, round-robin in one run (so drift hits all alike):
``dsp`` (switch around attention over the sharded axis, the other attention local), ``ulysses`` (head
all-to-alls around every self-attention, as xDiT and diffusers apply it), ``ulysses-resting`` (Ulysses on
attention over the sharded axis only: with ``--resting spatial``, the default, Open-Sora 1.2's own scheme)
and the unparallelized model on rank 0 alone. Bytes are what this rank passes into collectives per step
(see ``videosys.dsp.comm``), next to the closed forms: per spatial + temporal pair 2M/N (DSP), 8M/N
(Ulysses), 4M/N (Ulysses on the resting axis only), plus the final gather M/N.
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import time
from collections.abc import Collection

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.run import main as torchrun

from videosys.core import AdaLNBlock, Conditioning, STBackbone, denoising_step
from videosys.core.layers import FinalLayer, RotaryEmbedding, TimestepEmbedder
from videosys.dsp import comm_stats, parallelize, reset_comm_stats, total_bytes

MODES = ("dsp", "ulysses", "ulysses-resting")
PAIR_FACTOR = {"dsp": 2, "ulysses": 8, "ulysses-resting": 4}  # closed form, in units of M/N per layer pair


class STDiTLike(STBackbone):
    """Spatial (cross-attention, qk-norm) + temporal (RoPE) adaLN block pairs, as in STDiT3."""

    def __init__(self, dim: int, heads: int, pairs: int, in_dim: int, context_dim: int) -> None:
        super().__init__()
        self.proj_in = nn.Linear(in_dim, dim)
        self.t_embedder = TimestepEmbedder(dim)
        self.t_block = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))
        rope = RotaryEmbedding(dim // heads)
        cross = {"cross_attention": True, "context_dim": context_dim, "qk_norm": "rms"}
        spatial, temporal = {"axis": "spatial"}, {"axis": "temporal", "rope": rope}
        self.blocks = nn.ModuleList(
            AdaLNBlock(dim, heads, **axis, **cross) for _ in range(pairs) for axis in (spatial, temporal)
        )
        self.final = FinalLayer(dim, in_dim)

    def embed(self, tokens: torch.Tensor, t: torch.Tensor, context: torch.Tensor) -> tuple[torch.Tensor, Conditioning]:
        t_emb = self.t_embedder(t, dtype=tokens.dtype)
        return self.proj_in(tokens), Conditioning(modulation=self.t_block(t_emb), context=context, extras={"t": t_emb})

    def head(self, x: torch.Tensor, cond: Conditioning) -> torch.Tensor:
        return self.final(x, cond.extras["t"])


PROXY_IN_DIM, PROXY_CONTEXT_DIM = 8, 64
"""Input and text widths of the proxy backbones (their cost is in the blocks, not here)."""


def proxy_inputs(
    batch: int, frames: int, tokens: int, device: torch.device, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A proxy backbone's ``(tokens, timestep, text)``: random, the same on every rank after one seed."""
    return (
        torch.randn(batch, frames, tokens, PROXY_IN_DIM, device=device, dtype=dtype),
        torch.rand(batch, device=device) * 1000,
        torch.randn(batch, 32, PROXY_CONTEXT_DIM, device=device, dtype=dtype),
    )


def step(model: nn.Module, inputs: tuple[torch.Tensor, ...], backward: bool, device: torch.device) -> torch.Tensor:
    """One timed denoising (or training) step; returns the output."""
    with torch.set_grad_enabled(backward):
        out = model(*inputs)
        if backward:
            out.float().square().mean().backward()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return out.detach()


def round_robin(
    models: dict[str, nn.Module],
    parallel: Collection[str],
    inputs: tuple,
    backward: bool,
    device: torch.device,
    steps: int,
) -> tuple[dict[str, tuple[int, int, int]], dict[str, float], dict[str, float]]:
    """Time every model in turn, A B C A B C ..., so drift hits all alike; ``"1 rank"`` is the reference.

    The ``parallel`` models run on every rank, ``"1 rank"`` on rank 0 alone. Returns, per parallel model,
    the bytes one step passes into collectives (forward, backward, forward without the final gather), the
    median seconds per step of every model, and (on rank 0) each parallel output's max |diff| from 1 rank.
    """
    rank = dist.get_rank()

    def run(name: str) -> tuple[float, torch.Tensor | None]:
        dist.barrier()
        start = time.perf_counter()
        out = step(models[name], inputs, backward, device) if name in parallel or rank == 0 else None
        elapsed = time.perf_counter() - start
        dist.barrier()
        return elapsed, out

    sent = {}
    for name in models:  # warm-up, and one step's bytes per parallel model
        reset_comm_stats()
        run(name)
        if name in parallel:
            stats = comm_stats()
            forward = total_bytes(stats)
            sent[name] = (forward, total_bytes(stats, backward=True), forward - stats["gather"].bytes)
    reference = run("1 rank")[1]
    times: dict[str, list[float]] = {name: [] for name in models}
    max_diff = {}
    for _ in range(steps):
        for name in models:
            elapsed, out = run(name)
            times[name].append(elapsed)
            if rank == 0 and name in parallel:
                max_diff[name] = (out.float() - reference.float()).abs().max().item()
    return sent, {name: sorted(t)[len(t) // 2] for name, t in times.items()}, max_diff


def generations(
    models: dict[str, nn.Module], timesteps: list[float], inputs: tuple, device: torch.device
) -> dict[str, tuple[int, float]]:
    """Per model, bytes this rank fed to collectives and seconds over a whole sampling loop (no grad).

    The models advance step by step in turn (round-robin), so load on the machine hits them alike; each step
    runs inside the denoising-step context (for PAB) with ``inputs[1]`` (the timesteps) set to the step's.
    """
    sent, seconds = dict.fromkeys(models, 0), dict.fromkeys(models, 0.0)
    for i, t in enumerate(timesteps):
        for name, model in models.items():
            reset_comm_stats()
            dist.barrier()
            start = time.perf_counter()
            with denoising_step(i, t, len(timesteps)):
                step(model, (inputs[0], torch.full_like(inputs[1], t), *inputs[2:]), False, device)
            seconds[name] += time.perf_counter() - start
            sent[name] += total_bytes(comm_stats())
            dist.barrier()
    return {name: (sent[name], seconds[name]) for name in models}


def relaunch(script: str) -> None:
    """Run ``script`` with this process's arguments under torchrun: one rank per GPU (2+), else 2 CPU ranks."""
    gpus = torch.cuda.device_count()
    torchrun(["--standalone", "--nproc_per_node", str(gpus if gpus >= 2 else 2), script, *sys.argv[1:]])


def init_ranks() -> tuple[int, int, torch.device, torch.dtype]:
    """Join the torchrun group (NCCL with one GPU per rank, else gloo): rank, ranks, device, dtype."""
    cuda = torch.cuda.device_count() >= int(os.environ["WORLD_SIZE"])
    dist.init_process_group("nccl" if cuda else "gloo")
    rank, ranks = dist.get_rank(), dist.get_world_size()
    if cuda:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // ranks))
    return rank, ranks, device, torch.bfloat16 if cuda else torch.float32


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=16, help="latent frames T")
    parser.add_argument("--tokens", type=int, default=256, help="spatial tokens per frame S (16x16 patches)")
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--pairs", type=int, default=4, help="spatial + temporal block pairs")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--steps", type=int, default=5, help="timed steps per mode")
    parser.add_argument("--resting", choices=("spatial", "temporal"), default="spatial", help="the sharded axis")
    parser.add_argument("--backward", action="store_true", help="time forward + backward (training) steps")
    args = parser.parse_args()
    if "RANK" not in os.environ:  # not under torchrun: relaunch under it
        relaunch(__file__)
        return
    rank, ranks, device, dtype = init_ranks()
    cuda = device.type == "cuda"

    torch.manual_seed(0)  # same weights and inputs on every rank
    model = STDiTLike(args.dim, args.heads, args.pairs, PROXY_IN_DIM, PROXY_CONTEXT_DIM).to(device, dtype)
    inputs = proxy_inputs(args.batch, args.frames, args.tokens, device, dtype)
    models = {mode: parallelize(copy.deepcopy(model), resting_axis=args.resting, mode=mode) for mode in MODES}
    models["1 rank"] = model

    sent, median, max_diff = round_robin(models, MODES, inputs, args.backward, device, args.steps)
    if rank != 0:
        dist.destroy_process_group()
        return

    shard = args.batch * args.frames * args.tokens * args.dim * dtype.itemsize / ranks  # M/N bytes
    mib = 2**20
    kind = "forward + backward" if args.backward else "forward"
    print(
        f"{ranks} ranks, {device.type} ({'NCCL' if cuda else 'gloo'}), {dtype}; B={args.batch} T={args.frames} "
        f"S={args.tokens} C={args.dim} heads={args.heads}, {args.pairs} spatial+temporal pairs, resting axis "
        f"{args.resting}; M/N = "
        f"{shard / mib:.2f} MiB; {kind} steps, median of {args.steps}"
    )
    header = f"{'mode':<16}{'fwd MiB/step':>13}{'closed form':>13}{'ratio':>7}{'attn MiB':>10}{'bwd MiB':>9}"
    print(header + f"{'s/step':>9}{'vs dsp':>8}{'vs 1 rank':>10}{'max |diff|':>12}")
    for name in models:
        line = f"{name:<16}"
        if name in MODES:
            forward, backward, attention = sent[name]
            closed = (PAIR_FACTOR[name] * args.pairs + 1) * shard  # + the final gather
            line += f"{forward / mib:>13.2f}{closed / mib:>13.2f}{forward / closed:>7.3f}"
            line += f"{attention / mib:>10.2f}{backward / mib:>9.2f}"
        else:
            line += f"{'-':>13}{'-':>13}{'-':>7}{'-':>10}{'-':>9}"
        line += f"{median[name]:>9.3f}{median[name] / median['dsp']:>8.2f}{median['1 rank'] / median[name]:>9.2f}x"
        line += f"{max_diff[name]:>12.2e}" if name in MODES else f"{'-':>12}"
        print(line)
    dsp_attention = sent["dsp"][2]
    print(
        "attention-collective bytes, DSP / Ulysses = "
        f"{dsp_attention / sent['ulysses'][2]:.3f} (closed form 0.25), DSP / Ulysses-on-resting-axis-only = "
        f"{dsp_attention / sent['ulysses-resting'][2]:.3f} (closed form 0.5)"
    )
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
