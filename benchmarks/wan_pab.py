"""Wan 2.1 under PAB and DSP on a Wan-proportioned CPU proxy: ours vs diffusers' PAB hook, and DSP bytes.

    python benchmarks/wan_pab.py [--width 128] [--frames 21] [--depth 2] [--steps 50] [--repeats 2] [--ranks 2]

1. PAB. One random-weight diffusers ``WanTransformer3DModel`` is saved and loaded into our ``WanTransformer``
   (the same weights). The proxy keeps Wan 2.1 1.3B at 480x832, 81 frames, scaled to ``--width`` channels
   (real 1536): 21 latent frames, its tokens per frame scaled by width/1536 keeping the 30:52 grid aspect
   (attention's share of the compute follows tokens / width), heads of 64 channels, its FFN ratio 8960/1536,
   512 text tokens, ``--depth`` blocks (real 30; per-block cost is uniform, so ratios carry over). The loop is
   the release's: UniPC with flow sigmas (shift 3), ``--steps`` steps, CFG batch of 2. Four loops alternate
   (diffusers off, diffusers hook, ours off, ours with ``WAN_PAB``), CPU time of one thread, best of
   ``--repeats``. diffusers' hook gets the same rule (full/"spatial" attention every 2, cross every 6, on
   timesteps (100, 850)); it caches the attention output before the gate, we cache the gated branch output
   (the original PAB's unit), so the two PAB latents differ slightly. Printed: speedup of each against its
   own PAB-off loop, the ideal speedup from the FLOPs of the reused branches, efficiency (measured / ideal),
   attention calls computed, and each PAB latent's relative error against PAB off.
2. DSP. ``--ranks`` gloo processes run our proxy under ``dsp.parallelize`` (Ulysses around every FULL
   attention) with ``WAN_PAB``, the whole loop; the bytes each rank passed into collectives are printed beside
   the closed form of docs/sequence_parallel.rst: ``4 M/N`` per computed full attention (q, k, v, out) plus
   ``M/N`` for the gather before the head, per step, ``M/N`` one rank's padded share of a CFG batch's tokens.

Weights are random (no download): speed and equivalence of computation, not video quality.
"""

from __future__ import annotations

import argparse
import copy
import math
import os
import tempfile
import time
from collections.abc import Callable

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from pab_speedup import flops_per_call

from videosys.core import denoising_step
from videosys.models import WAN_PAB
from videosys.models.loading import load_backbone
from videosys.models.transformers import WanTransformer

REAL_WIDTH, REAL_GRID, REAL_FFN = 1536, (30, 52), 8960
"""Wan 2.1 1.3B: width, token grid per frame at 480x832 (latents 60x104, 2x2 patches), FFN width."""
TEXT_TOKENS, TEXT_DIM, IN_CHANNELS = 512, 64, 16
SCHEDULER = {"prediction_type": "flow_prediction", "use_flow_sigmas": True, "flow_shift": 3.0}
"""The flow-matching fields of the release's ``scheduler/scheduler_config.json`` (UniPC, the rest default)."""


def proxy_config(width: int, depth: int) -> dict:
    return {
        "patch_size": (1, 2, 2),
        "num_attention_heads": max(1, width // 64),
        "attention_head_dim": min(64, width),
        "in_channels": IN_CHANNELS,
        "out_channels": IN_CHANNELS,
        "text_dim": TEXT_DIM,
        "ffn_dim": round(width * REAL_FFN / REAL_WIDTH),
        "num_layers": depth,
    }


def latent_size(width: int) -> tuple[int, int]:
    """Latent (H, W) whose token grid has the real tokens per frame times width / 1536, in Wan's aspect."""
    scale = math.sqrt(width / REAL_WIDTH)
    return 2 * round(REAL_GRID[0] * scale), 2 * round(REAL_GRID[1] * scale)


def scheduler():
    import diffusers

    return diffusers.UniPCMultistepScheduler(**SCHEDULER)


def sample(model_fn: Callable, noise: torch.Tensor, text: torch.Tensor, steps: int, now: dict) -> torch.Tensor:
    """The release's loop: UniPC flow steps, guidance 5.0 over a [prompt; negative] batch."""
    sched = scheduler()
    sched.set_timesteps(steps)
    latents = noise.clone()
    for i, t in enumerate(sched.timesteps):
        now["t"] = float(t)
        with denoising_step(i, t, steps):
            out = model_fn(torch.cat([latents, latents]), t.expand(2), text)
        cond, uncond = out.chunk(2)
        latents = sched.step(uncond + 5.0 * (cond - uncond), t, latents, return_dict=False)[0]
    return latents


def count_queries(modules: dict[str, list[torch.nn.Module]]) -> dict[str, int]:
    """A live count of forward calls of each kind's query projection (it runs only when attention is computed)."""
    counts = dict.fromkeys(modules, 0)
    for kind, linears in modules.items():
        for linear in linears:
            linear.register_forward_hook(lambda *_, k=kind: counts.__setitem__(k, counts[k] + 1))
    return counts


@torch.no_grad()
def bench_pab(args: argparse.Namespace) -> None:
    import diffusers
    from diffusers.hooks import HookRegistry

    import videosys.pab as pab

    torch.manual_seed(0)
    reference = diffusers.WanTransformer3DModel(**proxy_config(args.width, args.depth)).eval()
    with torch.no_grad():
        for p in reference.parameters():
            p.normal_(0, 0.05)
    with tempfile.TemporaryDirectory() as folder:
        reference.save_pretrained(folder, safe_serialization=True)
        ours = load_backbone(WanTransformer, folder)
    height, width = latent_size(args.width)
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(1, IN_CHANNELS, args.frames, height, width, generator=g)
    text = torch.randn(2, TEXT_TOKENS, TEXT_DIM, generator=g)
    tokens = args.frames * (height // 2) * (width // 2)
    print(
        f"== PAB: proxy width {args.width} (real {REAL_WIDTH}), {proxy_config(args.width, 1)['num_attention_heads']} "
        f"heads, {args.frames} x {height // 2} x {width // 2} = {tokens} tokens, {TEXT_TOKENS} text tokens, "
        f"{args.depth} blocks, {args.steps} UniPC flow steps, CFG batch 2, 1 thread"
    )
    now = {"t": 1000.0}
    hooked = copy.deepcopy(reference)
    window = WAN_PAB.full.window
    diffusers.apply_pyramid_attention_broadcast(
        hooked,
        diffusers.PyramidAttentionBroadcastConfig(
            spatial_attention_block_skip_range=WAN_PAB.full.interval,
            cross_attention_block_skip_range=WAN_PAB.cross.interval,
            spatial_attention_timestep_skip_range=window,
            cross_attention_timestep_skip_range=WAN_PAB.cross.window,
            current_timestep_callback=lambda: now["t"],
        ),
    )
    ours_pab = copy.deepcopy(ours)
    pab.enable(ours_pab, WAN_PAB)
    counts = {}
    loops: dict[str, Callable[[], torch.Tensor]] = {}
    for name, model in (("diffusers, off", reference), ("diffusers hook", hooked)):
        counts[name] = count_queries(
            {"full": [b.attn1.to_q for b in model.blocks], "cross": [b.attn2.to_q for b in model.blocks]}
        )

        def run(model=model, name=name) -> torch.Tensor:
            if name == "diffusers hook":
                HookRegistry.check_if_exists_or_initialize(model).reset_stateful_hooks()
            fn = lambda x, t, c: model(x, timestep=t, encoder_hidden_states=c, return_dict=False)[0]  # noqa: E731
            return sample(fn, noise, text, args.steps, now)

        loops[name] = run
    for name, model in (("ours, off", ours), ("ours, WAN_PAB", ours_pab)):
        counts[name] = count_queries(
            {"full": [b.attn.inner.to_q for b in model.blocks], "cross": [b.cross.inner.to_q for b in model.blocks]}
        )
        loops[name] = lambda model=model: sample(model, noise, text, args.steps, now)

    best = dict.fromkeys(loops, math.inf)
    latents = {}
    for _ in range(args.repeats):
        for name, loop in loops.items():
            for kind in counts[name]:
                counts[name][kind] = 0
            start = time.thread_time()
            latents[name] = loop()
            best[name] = min(best[name], time.thread_time() - start)

    counts = {name: dict(c) for name, c in counts.items()}  # before the FLOP count calls the model once more
    total, per_call = flops_per_call(ours, torch.cat([noise, noise]), text)
    saved = sum(c["reused"] * per_call[kind] for kind, c in pab.stats(ours_pab).items()) / args.repeats
    ideal = total * args.steps / (total * args.steps - saved)
    print(f"one CFG forward: {total / 1e9:.2f} GFLOP; ideal PAB speedup from the reused branches' FLOPs {ideal:.3f}x")
    print(
        f"{'loop':<16}{'CPU s':>8}{'speedup':>9}{'efficiency':>12}{'full calls':>12}{'cross calls':>13}{'rel err':>10}"
    )
    for name in loops:
        base = "ours, off" if name.startswith("ours") else "diffusers, off"
        speedup = best[base] / best[name]
        error = ((latents[name] - latents[base]).norm() / latents[base].norm()).item()
        eff = f"{speedup / ideal:.3f}" if name != base else "-"
        print(
            f"{name:<16}{best[name]:>8.2f}{speedup:>8.3f}x{eff:>12}{counts[name]['full']:>12}"
            f"{counts[name]['cross']:>13}{error:>10.2e}"
        )
    print(
        f"ours vs diffusers, PAB off: time ratio {best['ours, off'] / best['diffusers, off']:.3f}, latent rel diff "
        f"{((latents['ours, off'] - latents['diffusers, off']).norm() / latents['diffusers, off'].norm()).item():.1e}"
    )


def dsp_rank(rank: int, ranks: int, rendezvous: str, args: argparse.Namespace, out: str) -> None:
    import videosys.dsp as dsp
    import videosys.pab as pab

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{rendezvous}", rank=rank, world_size=ranks)
    try:
        torch.manual_seed(0)
        model = WanTransformer.from_diffusers_config(proxy_config(args.width, args.depth)).eval()
        pab.enable(model, WAN_PAB)
        dsp.parallelize(model)
        height, width = latent_size(args.width)
        g = torch.Generator().manual_seed(0)
        noise = torch.randn(1, IN_CHANNELS, args.frames, height, width, generator=g)
        text = torch.randn(2, TEXT_TOKENS, TEXT_DIM, generator=g)
        dsp.reset_comm_stats()
        with torch.no_grad():
            sample(model, noise, text, args.steps, {})
        if rank == 0:
            stats = {kind: (count.calls, count.bytes) for kind, count in dsp.comm_stats().items()}
            torch.save({"stats": stats, "pab": pab.stats(model)}, out)
    finally:
        dist.destroy_process_group()


def bench_dsp(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "rank0.pt")
        mp.spawn(dsp_rank, args=(args.ranks, os.path.join(tmp, "rdzv"), args, out), nprocs=args.ranks, join=True)
        result = torch.load(out)
    height, width = latent_size(args.width)
    tokens = (height // 2) * (width // 2)
    shard = 2 * args.frames * math.ceil(tokens / args.ranks) * args.width * 4  # M/N: CFG batch, padded S, fp32
    computed = result["pab"]["full"]["computed"]
    closed = {"ulysses": 4 * computed * shard, "gather": args.steps * shard}
    print(
        f"\n== DSP: {args.ranks} gloo ranks, WAN_PAB on, {args.steps} steps; S = {tokens} sharded "
        f"(padded to {args.ranks * math.ceil(tokens / args.ranks)}), M/N = {shard / 2**20:.3f} MiB"
    )
    print(f"{'collective':<12}{'calls':>7}{'MiB':>10}{'closed form MiB':>17}")
    for kind, (calls, sent) in sorted(result["stats"].items()):
        form = f"{closed[kind] / 2**20:>17.3f}" if kind in closed else f"{'-':>17}"
        print(f"{kind:<12}{calls:>7}{sent / 2**20:>10.3f}{form}")
    print(f"full attention computed {computed} times, reused {result['pab']['full']['reused']} (no all-to-all then)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--width", type=int, default=128, help="proxy width (real 1536), heads of 64 channels")
    parser.add_argument("--frames", type=int, default=21, help="latent frames (81 video frames: 21)")
    parser.add_argument("--depth", type=int, default=2, help="blocks (real 30)")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=2, help="alternated rounds of the four loops")
    parser.add_argument("--ranks", type=int, default=2, help="gloo ranks of the DSP part (0: skip it)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    import diffusers

    print(f"torch {torch.__version__}, diffusers {diffusers.__version__}, CPU float32")
    bench_pab(args)
    if args.ranks:
        bench_dsp(args)


if __name__ == "__main__":
    main()
