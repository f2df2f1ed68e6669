"""PAB on vs off on CPU for proxies of real video DiTs, measured side by side in one run.

    python benchmarks/pab_speedup.py [--width 256] [--depth 1] [--repeats 2] [--threads 1] [--only Open-Sora-Plan]

What bounds PAB's gain is the share of compute inside the branches it reuses, and that share grows
with tokens per frame relative to the width (attention costs S^2 C against S C^2 for projections and
MLP). Each proxy keeps the real model's spatial tokens per frame *relative to its width* (width scaled
down to ``--width``), its latent frames, text length, sampler, step count and default PAB config
(REFERENCES.md), and has ``--depth`` spatial + ``--depth`` temporal blocks (the real ones have 28 + 28;
per-step cost is uniform over depth, so the ratios carry over; MLP reuse, which the originals apply
to blocks 0-4 of 28, keeps that share of the proxy's blocks: none at depth 1). The Open-Sora-Plan v1.2
proxy has ``--depth`` blocks of full 3-D attention over all ``T * S`` tokens with 3-D RoPE (the real one
32, width 2304): its tokens are scaled so that ``T * S`` relative to the width is the real model's, since
full attention costs ``(T S)^2 C`` against ``T S C^2``. Weights are random: the latent error below
compares PAB with the same model without PAB, not video quality.

Timing: the PAB-off model and its PAB-on copy run the same loop in lockstep, one forward each per
step (order flipped every step), fastest of ``--repeats`` rounds per step, on one torch thread. The
headline numbers use the thread's CPU time, which does not count the time other processes hold the
core on a shared machine; wall-clock ratios are printed beside them.

Printed per proxy: the measured speedup, the ideal speedup from the FLOPs the reused branches would
have cost (``torch.utils.flop_counter`` over one forward, per branch, attention through the math
backend so it is counted), their ratio (efficiency), attention and MLP calls saved, the relative error
of the final latent against PAB off, and PAB's overhead with every interval 1 (nothing reused), both
measured in lockstep and estimated from PAB's bookkeeping cost per branch call.
"""

from __future__ import annotations

import argparse
import copy
import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode
from tqdm import tqdm

from videosys.core import (
    AdaLNBlock,
    Conditioning,
    STBackbone,
    VideoGrid,
    attention_backend,
    branch_sites,
    denoising_step,
)
from videosys.core.layers import FinalLayer, GridRotaryEmbedding, RotaryEmbedding, TimestepEmbedder
from videosys.models import OPENSORA_PLAN_V12_PAB
from videosys.pab import Broadcast, MLPReuse, PABConfig, pab, stats

REAL_WIDTH, REAL_DEPTH = 1152, 28


class ProxyDiT(STBackbone):
    """Alternating spatial / temporal adaLN-single blocks (Latte-1, STDiT3 layout) on latent tokens, or with
    ``full`` blocks of full 3-D attention with RoPE over ``(t, h, w)`` (Open-Sora-Plan v1.2's layout)."""

    def __init__(
        self,
        width: int,
        heads: int,
        depth: int,
        in_channels: int,
        temporal_cross: bool,
        stdit3: bool,
        full: bool = False,
    ) -> None:
        super().__init__()
        self.proj_in = nn.Linear(in_channels, width)
        self.t_embed = TimestepEmbedder(width)
        self.t_block = nn.Sequential(nn.SiLU(), nn.Linear(width, 6 * width))
        d = width // heads
        rope = RotaryEmbedding(d) if stdit3 else None
        qk_norm = "rms" if stdit3 else None
        blocks = []
        for _ in range(depth):
            if full:  # any split of the head dim costs the same; equal thirds when it divides by 6
                grid_rope = GridRotaryEmbedding(d, split=(d - 4 * (d // 6), 2 * (d // 6), 2 * (d // 6)))
                blocks.append(AdaLNBlock(width, heads, "full", cross_attention=True, rope=grid_rope))
                continue
            blocks.append(AdaLNBlock(width, heads, "spatial", cross_attention=True, qk_norm=qk_norm))
            blocks.append(
                AdaLNBlock(width, heads, "temporal", cross_attention=temporal_cross, qk_norm=qk_norm, rope=rope)
            )
        self.blocks = nn.ModuleList(blocks)
        self.final = FinalLayer(width, in_channels)
        with torch.no_grad():  # random weights with adaLN-zero gates would make every branch output zero
            for block in self.blocks:
                block.scale_shift_table.normal_(0, 0.5)

    def embed(self, x: torch.Tensor, t: torch.Tensor, text: torch.Tensor) -> tuple[torch.Tensor, Conditioning]:
        emb = self.t_embed(t)
        tokens = x.shape[2]
        rows = max(n for n in range(1, math.isqrt(tokens) + 1) if tokens % n == 0)
        grid = VideoGrid(x.shape[1], rows, tokens // rows)  # for the 3-D RoPE of full attention
        return self.proj_in(x), Conditioning(modulation=self.t_block(emb), context=text, extras={"t": emb}, grid=grid)

    def head(self, x: torch.Tensor, cond: Conditioning) -> torch.Tensor:
        return self.final(x, cond.extras["t"])


@dataclass
class Proxy:
    name: str
    tokens_per_frame: int  # at the real width
    frames: int
    text_len: int
    timesteps: list[float]
    update: Callable[[torch.Tensor, torch.Tensor, float, float], torch.Tensor]
    config: Callable[[int], PABConfig]  # depth -> config
    temporal_cross: bool
    stdit3: bool
    full: bool = False
    real_width: int = REAL_WIDTH
    real_depth: int = REAL_DEPTH


def ddim_timesteps(steps: int = 50) -> list[float]:
    """DDIM "leading" spacing over 1000 training steps: 980, 960, ..., 0."""
    return [float(t) for t in range(1000 - 1000 // steps, -1, -(1000 // steps))]


_ALPHAS = torch.cumprod(1 - torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64), 0)


def ddim_update(x: torch.Tensor, eps: torch.Tensor, t: float, t_next: float) -> torch.Tensor:
    """Deterministic DDIM step with an epsilon-predicting model (Latte's linear betas)."""
    a, a_next = _ALPHAS[int(t)].item(), (_ALPHAS[int(t_next)].item() if t_next > 0 else 1.0)
    x0 = (x - math.sqrt(1 - a) * eps) / math.sqrt(a)
    return math.sqrt(a_next) * x0 + math.sqrt(1 - a_next) * eps


def rflow_timesteps(steps: int = 30, height: int = 480, width: int = 854, frames: int = 51) -> list[float]:
    """Open-Sora 1.2's rectified-flow timesteps with its resolution/length transform."""
    r = math.sqrt(height * width / 512**2) * math.sqrt(frames // 17 * 5)
    out = []
    for i in range(steps):
        t = 1 - i / steps
        out.append(1000 * r * t / (1 + (r - 1) * t))
    return out


def rflow_update(x: torch.Tensor, v: torch.Tensor, t: float, t_next: float) -> torch.Tensor:
    return x + (t_next - t) / 1000 * v


def mlp_layers(depth: int) -> list[int]:
    """The originals reuse the MLP of blocks 0-4 of 28 per axis; keep that share at ``depth`` blocks."""
    return list(range(round(5 * depth / REAL_DEPTH)))


def latte_config(depth: int) -> PABConfig:
    window = (100, 800)
    layers = mlp_layers(depth)
    # MLP points: timesteps 720, 640, 560, 480, 400 are steps 13, 17, 21, 25, 29 of ddim_timesteps(50).
    mlp = MLPReuse(layers, at=[13, 17, 21, 25, 29], steps=2) if layers else None
    return PABConfig(spatial=Broadcast(2, window), temporal=Broadcast(3, window), cross=Broadcast(6, window), mlp=mlp)


def open_sora_config(depth: int) -> PABConfig:
    window = (450, 930)
    layers = mlp_layers(depth)
    # MLP points: the original keys 864, 788, 676 are bf16-rounded rflow_timesteps(30) at steps 13, 17, 21.
    mlp = MLPReuse(layers, at=[13, 17, 21], steps=2) if layers else None
    return PABConfig(spatial=Broadcast(2, window), temporal=Broadcast(4, window), cross=Broadcast(6, window), mlp=mlp)


def linspace_timesteps(steps: int = 100) -> list[float]:
    """diffusers' "linspace" spacing over 1000 training steps: 999, ..., 0 (Euler schedulers' default)."""
    return torch.linspace(999, 0, steps, dtype=torch.float64).tolist()


PROXIES = [
    Proxy("Latte-1 512x512 (16 frames, 50 DDIM steps)", 1024, 16, 120, ddim_timesteps(50), ddim_update,
          latte_config, temporal_cross=False, stdit3=False),
    Proxy("Open-Sora 1.2 480p (13 latent frames, 30 rflow steps)", 1590, 13, 300, rflow_timesteps(30),
          rflow_update, open_sora_config, temporal_cross=True, stdit3=True),
    # 29x480p: 8 latent frames of 30 x 40 patches, mT5's 512 tokens; EulerAncestral's 100 steps, run without its
    # noise (deterministic, so the latent error is PAB's alone): the Euler step, which is DDIM's update.
    Proxy("Open-Sora-Plan v1.2 29x480p (8 latent frames, full 3-D attention, 100 Euler steps)", 1200, 8, 512,
          linspace_timesteps(100), ddim_update, lambda depth: OPENSORA_PLAN_V12_PAB, temporal_cross=False,
          stdit3=False, full=True, real_width=2304, real_depth=32),
]  # fmt: skip

EVERY_STEP = PABConfig(spatial=Broadcast(1), temporal=Broadcast(1), full=Broadcast(1), cross=Broadcast(1))


@torch.no_grad()
def lockstep(
    models: list[ProxyDiT], proxy: Proxy, noise: torch.Tensor, text: torch.Tensor, steps: int | None, desc: str
) -> tuple[list[list[tuple[float, float]]], list[torch.Tensor]]:
    """Run one sampling loop per model, step by step in turn (the order flips every step), timing each forward.

    Interleaving at step granularity makes both models see the same load on a shared machine. Each
    forward is timed by the wall clock and by this thread's CPU time (with one torch thread, all the
    compute runs on it; CPU time does not count the time other processes hold the core).
    Returns per-model lists of per-step ``(wall, cpu)`` seconds and the final latents.
    """
    n = len(proxy.timesteps)
    xs = [noise.clone() for _ in models]
    times: list[list[tuple[float, float]]] = [[] for _ in models]
    for i in tqdm(range(steps or n), desc=desc, leave=False):
        t, t_next = proxy.timesteps[i], (proxy.timesteps[i + 1] if i + 1 < n else 0.0)
        for k in range(len(models)) if i % 2 == 0 else reversed(range(len(models))):
            with denoising_step(i, t, n):
                wall, cpu = time.perf_counter(), time.thread_time()
                out = models[k](xs[k], torch.full((xs[k].shape[0],), t), text)
                times[k].append((time.perf_counter() - wall, time.thread_time() - cpu))
            xs[k] = proxy.update(xs[k], out, t, t_next)
    return times, xs


def best_total(rounds: list[list[tuple[float, float]]], clock: int) -> float:
    """Sum over steps of the fastest round's time for that step (``clock`` 0: wall, 1: CPU)."""
    return sum(min(timing[clock] for timing in per_step) for per_step in zip(*rounds))


def flops_per_call(model: ProxyDiT, x: torch.Tensor, text: torch.Tensor) -> tuple[float, dict[str, float]]:
    """FLOPs of one forward, and of one call of each branch kind (matmuls, attention through the math backend)."""
    sites = branch_sites(model)
    counter = FlopCounterMode(display=False)
    spent: dict[str, list[float]] = {}
    handles = []
    for site in sites:
        kind = site.branch.axis.value if site.branch.axis is not None else "mlp"
        start: list[int] = []
        handles.append(site.branch.register_forward_pre_hook(lambda m, a, s=start: s.append(counter.get_total_flops())))
        handles.append(
            site.branch.register_forward_hook(
                lambda m, a, o, s=start, k=kind: spent.setdefault(k, []).append(counter.get_total_flops() - s.pop())
            )
        )
    with torch.no_grad(), attention_backend("math"), counter:
        model(x, torch.full((x.shape[0],), 500.0), text)
    for handle in handles:
        handle.remove()
    return counter.get_total_flops(), {kind: statistics.fmean(v) for kind, v in spent.items()}


def bookkeeping_per_call(rounds: int = 7, steps: int = 200) -> float:
    """PAB's own CPU cost per branch call, in seconds: a 1-token model with and without every interval 1."""
    torch.manual_seed(0)
    model = ProxyDiT(8, 1, 1, 4, temporal_cross=True, stdit3=False).eval()
    x, text, t = torch.randn(1, 1, 1, 4), torch.randn(1, 1, 8), torch.full((1,), 500.0)

    @torch.no_grad()
    def loop() -> float:
        start = time.thread_time()
        for i in range(steps):
            with denoising_step(i, 1000.0 * (1 - i / steps), steps):
                model(x, t, text)
        return time.thread_time() - start

    plain, wrapped = [], []
    for _ in range(rounds):
        plain.append(loop())
        with pab(model, EVERY_STEP):
            wrapped.append(loop())
    return (min(wrapped) - min(plain)) / (steps * len(branch_sites(model)))


def bench(proxy: Proxy, args: argparse.Namespace, per_call_cost: float) -> None:
    width, heads, depth = args.width, args.width // 64, args.depth
    tokens = round(proxy.tokens_per_frame * width / proxy.real_width)
    torch.manual_seed(0)
    model = ProxyDiT(width, heads, depth, 4, proxy.temporal_cross, proxy.stdit3, proxy.full).eval()
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(1, proxy.frames, tokens, 4, generator=g)
    text = torch.randn(1, proxy.text_len, width, generator=g)
    config = proxy.config(depth)
    steps = len(proxy.timesteps)
    print(f"\n== {proxy.name}")
    blocks = f"{depth} full" if proxy.full else f"{depth}+{depth}"
    real_blocks = f"{proxy.real_depth} full" if proxy.full else f"{proxy.real_depth}+{proxy.real_depth}"
    print(
        f"proxy: width {width} (real {proxy.real_width}), {tokens} tokens/frame (real {proxy.tokens_per_frame}), "
        f"{proxy.frames} frames, {proxy.text_len} text tokens, {blocks} blocks (real {real_blocks}), "
        f"batch 1 (guidance would double every branch alike), {steps} steps"
    )
    print(f"config: {config}")
    if config.mlp is None and not proxy.full:
        print(f"(MLP reuse, blocks 0-4 of {REAL_DEPTH} per axis in the original, scales to no block at depth {depth})")

    twin = copy.deepcopy(model)
    off_rounds, on_rounds = [], []
    for r in range(args.repeats):
        with pab(twin, config):
            (off, on), (x_off, x_on) = lockstep([model, twin], proxy, noise, text, None, f"off/on round {r + 1}")
            counts = stats(twin)
        off_rounds.append(off)
        on_rounds.append(on)
    total, per_call = flops_per_call(model, noise, text)
    saved = sum(c["reused"] * per_call[kind] for kind, c in counts.items())
    ideal = total * steps / (total * steps - saved)
    wall_off, wall_on = best_total(off_rounds, 0), best_total(on_rounds, 0)
    cpu_off, cpu_on = best_total(off_rounds, 1), best_total(on_rounds, 1)
    measured = cpu_off / cpu_on
    error = ((x_on - x_off).norm() / x_off.norm()).item()

    plain_rounds, wrapped_rounds = [], []
    for r in range(args.overhead_rounds):
        with pab(twin, EVERY_STEP):
            (plain, wrapped), _ = lockstep(
                [model, twin], proxy, noise, text, args.overhead_steps, f"interval-1 {r + 1}"
            )
        plain_rounds.append(plain)
        wrapped_rounds.append(wrapped)
    overhead = [best_total(wrapped_rounds, c) / best_total(plain_rounds, c) - 1 for c in (0, 1)]

    print(
        f"CPU time, PAB off: {cpu_off:.2f} s  on: {cpu_on:.2f} s;  wall clock, off: {wall_off:.2f} s  on: "
        f"{wall_on:.2f} s  (off/on alternated step by step, fastest of {args.repeats} rounds per step)"
    )
    print(f"measured speedup: {measured:.3f}x CPU time ({wall_off / wall_on:.3f}x wall clock on this shared machine)")
    print(f"ideal speedup from skipped FLOPs: {ideal:.3f}x   (one forward: {total / 1e9:.1f} GFLOP)")
    print(f"efficiency (measured / ideal): {measured / ideal:.3f}")
    for kind, c in counts.items():
        calls = c["computed"] + c["reused"]
        print(
            f"  {kind:9s} calls reused {c['reused']:4d} / {calls:4d} ({100 * c['reused'] / calls:5.1f}%), "
            f"{calls // steps} call(s)/step, each {per_call[kind] / total * 100:4.1f}% of a forward's FLOPs"
        )
    attention = [c for kind, c in counts.items() if kind != "mlp"]
    reused = sum(c["reused"] for c in attention)
    print(f"attention calls saved: {reused} of {sum(c['reused'] + c['computed'] for c in attention)}")
    print(f"relative error of the final latent (PAB vs off, same weights and noise): {error:.2e}")
    print(
        f"overhead with every interval 1: {100 * overhead[1]:+.2f}% CPU time ({100 * overhead[0]:+.2f}% wall), "
        f"{args.overhead_steps} steps alternated with PAB off, fastest of {args.overhead_rounds} rounds per step"
    )
    calls = len(branch_sites(model))
    print(
        f"  from the bookkeeping cost: {calls} branch calls x {per_call_cost * 1e6:.1f} us = "
        f"{100 * calls * per_call_cost / (cpu_off / steps):.3f}% of a forward"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--depth", type=int, default=1, help="spatial blocks (and as many temporal blocks)")
    parser.add_argument("--repeats", type=int, default=2, help="alternated off/on generations")
    parser.add_argument("--overhead-rounds", type=int, default=3)
    parser.add_argument("--overhead-steps", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 is steadier on a shared machine)")
    parser.add_argument("--only", default="", help="run only the proxies whose name contains this text")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), CPU float32")
    per_call_cost = bookkeeping_per_call()
    print(f"PAB bookkeeping per branch call (1-token model, every interval 1): {per_call_cost * 1e6:.1f} us CPU")
    for proxy in PROXIES:
        if args.only in proxy.name:
            bench(proxy, args, per_call_cost)


if __name__ == "__main__":
    main()
