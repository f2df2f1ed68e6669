"""CogVideoX: our PAB against diffusers' PAB hook on the same weights, and DSP's bytes against the closed form.

    python benchmarks/cogvideox_pab.py [--width 128] [--depth 2] [--steps 50] [--repeats 2] [--threads 1]

The proxy is CogVideoX-2b proportioned for a CPU: what bounds PAB's gain is the share of compute in the
joint attention, which grows with the joint sequence length relative to the width (``N^2 C`` against
``N C^2``), so the proxy keeps CogVideoX-2b's (13 x 1350 video + 226 text tokens) / 1920 channels at width
``--width`` (64-channel heads), its 13 latent frames, its sampler (CogVideoXDDIMScheduler, trailing,
v-prediction, 50 steps), guidance 6 (a batch of 2) and its PAB default (joint attention every 2 steps on
(100, 850)), with ``--depth`` blocks (the real one has 30; per-step cost is uniform over depth). Weights are
random (a diffusers ``CogVideoXTransformer3DModel``, saved and loaded into ours): errors compare PAB with
the same model without PAB, not video quality.

1. PAB: four sampling loops (ours and diffusers', PAB off and on; diffusers' through
   ``apply_pyramid_attention_broadcast`` with the same interval and window), run in turn ``--repeats`` times
   after a warm-up, each timed by this thread's CPU time (one torch thread; CPU time does not count the time
   other processes hold the core on a shared machine) and by the wall clock. Printed: speedups, the ideal
   speedup from the FLOPs of the attention calls skipped (``torch.utils.flop_counter``), efficiency
   (measured / ideal), attention calls computed, and the final latents' relative differences.
2. DSP on 2 gloo ranks: bytes each rank passes into collectives for one forward + backward of the guidance
   batch, and over the PAB sampling loop, next to the closed forms of docs/sequence_parallel.rst (joint
   attention: Ulysses ``4 M/N`` per attention, the text output's heads replicated, ``B L C / N`` forward and
   ``B L C`` backward; the final gather and the split's gradient ``M/N``; ``M/N`` is one rank's share of
   one activation, the sharded axis padded to a multiple of the ranks).
"""

from __future__ import annotations

import argparse
import copy
import math
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from models_vs_diffusers import count_calls, randomize, save_and_load
from pab_speedup import flops_per_call

from videosys.core import denoising_step
from videosys.models import COGVIDEOX_PAB
from videosys.models.transformers import CogVideoXTransformer

REAL = {"width": 1920, "frames": 13, "tokens": 1350, "text": 226, "depth": 30}
GUIDANCE = 6.0


def proxy_config(width: int, depth: int) -> dict:
    """A CogVideoX-2b config whose joint sequence keeps the real (tokens / width) ratio at ``width``."""
    tokens = REAL["tokens"] * width / REAL["width"]
    rows = max(1, round(math.sqrt(tokens * 30 / 45)))  # CogVideoX's 30 x 45 grid, scaled
    cols = max(1, round(tokens / rows))
    return {
        "num_attention_heads": width // 64,
        "attention_head_dim": 64,
        "in_channels": 16,
        "out_channels": 16,
        "time_embed_dim": max(8, round(512 * width / REAL["width"])),
        "text_embed_dim": 64,
        "num_layers": depth,
        "sample_height": 2 * rows,
        "sample_width": 2 * cols,
        "sample_frames": 4 * (REAL["frames"] - 1) + 1,
        "max_text_seq_length": max(1, round(REAL["text"] * width / REAL["width"])),
    }


def scheduler(steps: int):
    """CogVideoX-2b's published scheduler."""
    import diffusers

    sched = diffusers.CogVideoXDDIMScheduler(
        beta_schedule="scaled_linear",
        beta_start=0.00085,
        beta_end=0.012,
        clip_sample=False,
        prediction_type="v_prediction",
        rescale_betas_zero_snr=True,
        set_alpha_to_one=True,
        snr_shift_scale=3.0,
        timestep_spacing="trailing",
    )
    sched.set_timesteps(steps)
    return sched


def proxy_inputs(config: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """Noise ``(1, C, T, H, W)`` (our layout) and the guidance batch's text ``(2, L, Ct)``."""
    g = torch.Generator().manual_seed(1)
    shape = (1, 16, REAL["frames"], config["sample_height"], config["sample_width"])
    text = torch.randn(2, config["max_text_seq_length"], config["text_embed_dim"], generator=g)
    return torch.randn(shape, generator=g), text


@torch.no_grad()
def sampling_loop(model_fn: Callable, config: dict, steps: int, on_step: Callable[[float], None]) -> torch.Tensor:
    """CFG sampling with CogVideoX-2b's DDIM; ``model_fn(x, t, text)`` takes and returns our layout."""
    sched = scheduler(steps)
    latents, text = proxy_inputs(config)
    for i, t in enumerate(sched.timesteps):
        on_step(float(t))
        with denoising_step(i, t, steps):
            cond, uncond = model_fn(torch.cat([latents, latents]), t.expand(2), text).chunk(2)
            latents = sched.step(uncond + GUIDANCE * (cond - uncond), t, latents, return_dict=False)[0]
    return latents


def timed(fn: Callable[[], torch.Tensor]) -> tuple[float, float, torch.Tensor]:
    wall, cpu = time.perf_counter(), time.thread_time()
    out = fn()
    return time.perf_counter() - wall, time.thread_time() - cpu, out


def bench_pab(args: argparse.Namespace) -> None:
    import diffusers
    from diffusers.hooks import HookRegistry

    config = proxy_config(args.width, args.depth)
    base = diffusers.CogVideoXTransformer3DModel(**config)
    randomize(base)
    ours, base = save_and_load(base, CogVideoXTransformer, torch.device("cpu"), torch.float32)
    now = {"t": 1000.0}

    def on_step(t: float) -> None:
        now["t"] = t

    window, interval = COGVIDEOX_PAB.full.window, COGVIDEOX_PAB.full.interval
    runs: dict[str, Callable[[], torch.Tensor]] = {}
    counters = {}
    for name, hook in (("diffusers, PAB off", False), ("diffusers, PAB hook", True)):
        reference = copy.deepcopy(base)
        counters[name] = count_calls({"joint": [b.attn1.to_q for b in reference.transformer_blocks]})
        if hook:
            diffusers.apply_pyramid_attention_broadcast(
                reference,
                diffusers.PyramidAttentionBroadcastConfig(
                    spatial_attention_block_skip_range=interval,
                    spatial_attention_timestep_skip_range=window,
                    current_timestep_callback=lambda: now["t"],
                ),
            )

        def run(reference=reference, calls=counters[name]) -> torch.Tensor:
            HookRegistry.check_if_exists_or_initialize(reference).reset_stateful_hooks()
            calls.clear()

            def model_fn(x, t, text):
                out = reference(x.transpose(1, 2), text, timestep=t, return_dict=False)[0]
                return out.transpose(1, 2)

            return sampling_loop(model_fn, config, args.steps, on_step)

        runs[name] = run
    import videosys.pab as pab

    for name, pab_on in (("ours, PAB off", False), ("ours, PAB on", True)):
        model = copy.deepcopy(ours)
        if pab_on:
            pab.enable(model, COGVIDEOX_PAB)
        counters[name] = count_calls({"joint": [b.attn.inner for b in model.blocks]})  # PAB wraps the branch

        def run_ours(model=model, calls=counters[name]) -> torch.Tensor:
            calls.clear()
            return sampling_loop(lambda x, t, text: model(x, t, text), config, args.steps, on_step)

        runs[name] = run_ours

    times: dict[str, list[tuple[float, float]]] = {name: [] for name in runs}
    finals: dict[str, torch.Tensor] = {}
    for round_ in range(args.repeats + 1):
        for name, run in runs.items():
            wall, cpu, finals[name] = timed(run)
            if round_:
                times[name].append((wall, cpu))
    best = {name: (min(w for w, _ in ts), min(c for _, c in ts)) for name, ts in times.items()}

    noise, text = proxy_inputs(config)
    total, per_call = flops_per_call(ours, torch.cat([noise, noise]), text)
    calls = args.steps * args.depth
    frames, rows, cols = REAL["frames"], config["sample_height"] // 2, config["sample_width"] // 2
    print(
        f"\n== PAB, CogVideoX-2b proxy: width {args.width} (real {REAL['width']}), {frames} frames x {rows * cols} "
        f"tokens ({rows}x{cols}) + {config['max_text_seq_length']} text tokens (real {frames} x {REAL['tokens']} + "
        f"{REAL['text']}), {args.depth} blocks (real {REAL['depth']}), {args.steps} DDIM steps, CFG batch 2"
    )
    print(
        f"PAB: joint attention every {interval} steps on {window}; one forward {total / 1e9:.2f} GFLOP, "
        f"joint attention {100 * per_call['full'] / total:.1f}% of it"
    )
    print(f"{'loop':22s}{'CPU s':>8s}{'wall s':>8s}{'speedup':>9s}{'ideal':>7s}{'effic.':>8s}{'attn calls':>12s}")
    for name, (wall, cpu) in best.items():
        off = best["ours, PAB off" if name.startswith("ours") else "diffusers, PAB off"]
        computed = counters[name]["joint"]
        ideal = total * args.steps / (total * args.steps - (calls - computed) * per_call["full"])
        speedup = off[1] / cpu
        print(
            f"{name:22s}{cpu:8.2f}{wall:8.2f}{speedup:8.2f}x{ideal:6.2f}x{speedup / ideal:8.2f}"
            f"{f'{computed}/{calls}':>12s}"
        )

    def rel(a: str, b: str) -> float:
        return ((finals[a] - finals[b]).norm() / finals[b].norm()).item()

    print(
        f"final latent, ours vs diffusers: PAB off {rel('ours, PAB off', 'diffusers, PAB off'):.1e}, "
        f"PAB on {rel('ours, PAB on', 'diffusers, PAB hook'):.1e}; PAB on vs off: ours "
        f"{rel('ours, PAB on', 'ours, PAB off'):.1e}, diffusers {rel('diffusers, PAB hook', 'diffusers, PAB off'):.1e}"
    )
    print(f"(best of {args.repeats} rounds; the four loops run in turn each round)")
    print(
        "both reuse at the same steps; ours reuses the branch output after its gate (PAB's cache, "
        "docs/architecture.rst), diffusers' hook the attention output before the current step's gate"
    )


def _dsp_rank(rank: int, ranks: int, rendezvous: str, folder: str, out: str, steps: int) -> None:
    import videosys.dsp as dsp
    import videosys.pab as pab
    from videosys.models.loading import load_backbone

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{rendezvous}", rank=rank, world_size=ranks)
    try:
        config = proxy_config(*(int(v) for v in Path(folder, "shape").read_text().split()))
        model = dsp.parallelize(load_backbone(CogVideoXTransformer, folder))
        noise, text = proxy_inputs(config)
        dsp.reset_comm_stats()
        model(torch.cat([noise, noise]), torch.tensor([500, 500]), text).square().mean().backward()
        training = {kind: (c.calls, c.bytes) for kind, c in dsp.comm_stats().items()}
        pab.enable(model, COGVIDEOX_PAB)
        dsp.reset_comm_stats()
        sampling_loop(lambda x, t, c: model(x, t, c), config, steps, lambda t: None)
        if rank == 0:
            sampling = {kind: (c.calls, c.bytes) for kind, c in dsp.comm_stats().items()}
            torch.save({"training": training, "sampling": sampling, "pab": pab.stats(model)}, out)
    finally:
        dist.destroy_process_group()


def bench_dsp(args: argparse.Namespace, ranks: int = 2) -> None:
    import diffusers

    config = proxy_config(args.width, args.depth)
    reference = diffusers.CogVideoXTransformer3DModel(**config)
    randomize(reference)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp, "transformer")
        reference.save_pretrained(folder, safe_serialization=True)
        Path(folder, "shape").write_text(f"{args.width} {args.depth}")
        out = Path(tmp, "stats.pt")
        mp.spawn(_dsp_rank, args=(ranks, str(Path(tmp, "store")), str(folder), str(out), args.steps), nprocs=ranks)
        result = torch.load(out)
    frames, tokens = REAL["frames"], (config["sample_height"] // 2) * (config["sample_width"] // 2)
    batch, width, text, depth = 2, args.width, config["max_text_seq_length"], args.depth
    shard = batch * frames * math.ceil(tokens / ranks) * width * 4  # M/N bytes: S padded to a multiple of N
    text_bytes = batch * text * width * 4  # B L C
    computed = result["pab"]["full"]["computed"]
    closed = {
        "training forward": depth * (4 * shard + text_bytes // ranks) + shard,
        "training backward": depth * 4 * shard + (depth - 1) * text_bytes + shard,
        "sampling forward (PAB)": computed * (4 * shard + text_bytes // ranks) + args.steps * shard,
    }

    def measured(stats: dict, backward: bool) -> int:
        return sum(size for kind, (_, size) in stats.items() if kind.endswith(".backward") == backward)

    got = {
        "training forward": measured(result["training"], False),
        "training backward": measured(result["training"], True),
        "sampling forward (PAB)": measured(result["sampling"], False),
    }
    kib = 1024
    print(
        f"\n== DSP on {ranks} gloo ranks, same proxy: B={batch} T={frames} S={tokens} C={width} L={text}, "
        f"{depth} blocks; M/N = {shard / kib:.1f} KiB, B L C = {text_bytes / kib:.1f} KiB"
    )
    print(f"{'bytes per rank':28s}{'measured KiB':>14s}{'closed form KiB':>17s}")
    for name, value in got.items():
        print(f"{name:28s}{value / kib:14.1f}{closed[name] / kib:17.1f}")
    print(
        f"sampling loop, {args.steps} steps with PAB: {computed} joint attentions computed of "
        f"{computed + result['pab']['full']['reused']}; collectives by kind (calls, bytes): {result['sampling']}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--width", type=int, default=128, help="a multiple of 64 (64-channel heads)")
    parser.add_argument("--depth", type=int, default=2)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=2, help="timed rounds of the four loops")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--skip-dsp", action="store_true")
    args = parser.parse_args()
    if args.width % 64 or args.width < 128:
        parser.error(f"--width {args.width}: expected a multiple of 64, at least 128 (2 heads, to split on 2 ranks)")
    torch.set_num_threads(args.threads)
    import diffusers

    print(
        f"torch {torch.__version__}, diffusers {diffusers.__version__}, {torch.get_num_threads()} thread(s), "
        f"CPU float32, {os.cpu_count()} cores"
    )
    bench_pab(args)
    if not args.skip_dsp:
        bench_dsp(args)


if __name__ == "__main__":
    main()
