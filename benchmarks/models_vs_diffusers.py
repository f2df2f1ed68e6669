"""Our Latte and DiT against diffusers' on the same weights, and our PAB against diffusers' PAB hook.

    python benchmarks/models_vs_diffusers.py [--repeats 7] [--device cpu|cuda] [--steps 20]

1. Forward passes, alternated (ours, theirs, ours, ...) on one random-weight checkpoint each, CFG batch.
   Prints median times and ours/diffusers (target <= 1.05).
2. A DDIM sampling loop with CFG on Latte, PAB off and on, with Latte's published intervals (spatial 2,
   temporal 3, cross 6 on (100, 800)). diffusers' hook picks layers by name regex and its default
   spatial identifiers ("transformer_blocks") also match "temporal_transformer_blocks", giving temporal
   attention the spatial interval; we report that default and a run with identifiers anchored to match
   only the intended layers. Counts of computed attention calls per kind show both skip the same
   layers at the same steps. Our side needs videosys-pab (skipped, with the reason, when it is absent).

Weights are random (no download): this measures speed and equivalence of computation, not quality.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Callable

import torch

from videosys.core import denoising_step
from videosys.models.loading import load_backbone
from videosys.models.transformers import DiTTransformer, LatteTransformer

LATTE = {
    "num_attention_heads": 6,
    "attention_head_dim": 64,
    "in_channels": 4,
    "out_channels": 8,
    "num_layers": 4,
    "cross_attention_dim": 384,
    "attention_bias": True,
    "sample_size": 16,
    "patch_size": 2,
    "activation_fn": "gelu-approximate",
    "num_embeds_ada_norm": 1000,
    "norm_type": "ada_norm_single",
    "norm_elementwise_affine": False,
    "norm_eps": 1e-6,
    "caption_channels": 512,
    "video_length": 16,
}
DIT = {"num_attention_heads": 6, "attention_head_dim": 64, "num_layers": 8, "sample_size": 32, "out_channels": 8}
PAB_INTERVALS = {"spatial": 2, "temporal": 3, "cross": 6}
PAB_WINDOW = (100, 800)


def randomize(model: torch.nn.Module) -> None:
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=generator) * 0.05)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def alternate(fns: dict[str, Callable[[], object]], repeats: int, device: torch.device) -> dict[str, list[float]]:
    """Seconds of each call of each function, called in turn ``repeats`` times after one warm-up round."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    for round_ in range(repeats + 1):
        for name, fn in fns.items():
            sync(device)
            start = time.perf_counter()
            fn()
            sync(device)
            if round_:
                times[name].append(time.perf_counter() - start)
    return times


def save_and_load(reference: torch.nn.Module, ours_cls: type, device: torch.device, dtype: torch.dtype):
    with tempfile.TemporaryDirectory() as folder:
        reference.save_pretrained(folder, safe_serialization=True)
        ours = load_backbone(ours_cls, folder, device=device, dtype=dtype)
    return ours, reference.to(device=device, dtype=dtype).eval()


@torch.no_grad()
def bench_forward(args: argparse.Namespace, diffusers, device: torch.device, dtype: torch.dtype) -> None:
    print(f"\n== forward, {args.repeats} alternated runs each ({device}, {dtype}) ==")
    gen = torch.Generator().manual_seed(0)
    if hasattr(diffusers, "LatteTransformer3DModel"):
        reference = diffusers.LatteTransformer3DModel(**LATTE)
        randomize(reference)
        ours, reference = save_and_load(reference, LatteTransformer, device, dtype)
        x = torch.randn(2, 4, 16, 16, 16, generator=gen).to(device, dtype)
        text = torch.randn(2, 24, LATTE["caption_channels"], generator=gen).to(device, dtype)
        t = torch.tensor([500, 500], device=device)
        times = alternate(
            {
                "ours": lambda: ours(x, t, text),
                "diffusers": lambda: reference(x, timestep=t, encoder_hidden_states=text, return_dict=False),
            },
            args.repeats,
            device,
        )
        report("Latte (4+4 blocks, width 384, 16 frames x 64 tokens, batch 2)", times)
    else:
        print(f"Latte: skipped, diffusers {diffusers.__version__} has no LatteTransformer3DModel (added in 0.30)")
    reference = diffusers.DiTTransformer2DModel(**DIT)
    randomize(reference)
    shared = reference.transformer_blocks[0].norm1.emb.state_dict()
    for block in reference.transformer_blocks[1:]:
        block.norm1.emb.load_state_dict(shared)
    ours, reference = save_and_load(reference, DiTTransformer, device, dtype)
    x = torch.randn(4, 4, 32, 32, generator=gen).to(device, dtype)
    labels, t = torch.tensor([1, 2, 1000, 1000], device=device), torch.tensor([500] * 4, device=device)
    times = alternate(
        {
            "ours": lambda: ours(x, t, labels),
            "diffusers": lambda: reference(x, timestep=t, class_labels=labels, return_dict=False),
        },
        args.repeats,
        device,
    )
    report("DiT (8 blocks, width 384, 256 tokens, batch 4)", times)


def report(title: str, times: dict[str, list[float]]) -> None:
    """Median and best run of each side; the best run is the less sensitive to other load on the machine."""
    print(title)
    for stat in (statistics.median, min):
        ours, theirs = stat(times["ours"]), stat(times["diffusers"])
        print(
            f"  {stat.__name__:6s} ours {ours * 1e3:8.1f} ms  diffusers {theirs * 1e3:8.1f} ms  "
            f"ours/diffusers {ours / theirs:.3f} (target <= 1.05)"
        )


def count_calls(linears: dict[str, list[torch.nn.Module]]) -> Counter:
    """Count forward calls of each kind's query projection (it runs only when the attention is computed)."""
    counter: Counter = Counter()
    for kind, modules in linears.items():
        for module in modules:
            module.register_forward_hook(lambda *_, kind=kind: counter.update([kind]))
    return counter


def sampling_loop(model_fn: Callable, steps: int, on_step: Callable[[int, torch.Tensor], None], device, dtype):
    import diffusers

    scheduler = diffusers.DDIMScheduler(beta_schedule="linear", clip_sample=False)
    scheduler.set_timesteps(steps)
    latents = torch.randn(1, 4, 16, 16, 16, generator=torch.Generator().manual_seed(1)).to(device, dtype)
    text = torch.randn(2, 24, LATTE["caption_channels"], generator=torch.Generator().manual_seed(2)).to(device, dtype)
    for i, t in enumerate(scheduler.timesteps):
        on_step(i, t)
        with denoising_step(i, t, steps):
            out = model_fn(torch.cat([latents, latents]), t.expand(2).to(device), text)
            cond, uncond = out.chunk(2)
            eps = (uncond + 7.5 * (cond - uncond))[:, :4]
            latents = scheduler.step(eps, t, latents, return_dict=False)[0]
    return latents


@torch.no_grad()
def bench_pab(args: argparse.Namespace, diffusers, device: torch.device, dtype: torch.dtype) -> None:
    loops = f"best of {args.pab_repeats} alternated loops"
    print(f"\n== Latte sampling, {args.steps} DDIM steps with CFG, PAB off/on, {loops} ==")
    if not hasattr(diffusers, "LatteTransformer3DModel") or not hasattr(diffusers, "apply_pyramid_attention_broadcast"):
        print(f"skipped: diffusers {diffusers.__version__} lacks LatteTransformer3DModel or the PAB hook (>= 0.33)")
        return
    from diffusers.hooks import HookRegistry

    base = diffusers.LatteTransformer3DModel(**LATTE)
    randomize(base)
    ours, base = save_and_load(base, LatteTransformer, device, dtype)
    now = {"t": 1000}

    def on_step(i, t):
        now["t"] = int(t)

    variants = {
        "diffusers, PAB off": None,
        "diffusers hook, default identifiers": {},
        "diffusers hook, anchored identifiers": {
            "spatial_attention_block_identifiers": (r"^transformer_blocks\.\d+\.attn1$",),
            "temporal_attention_block_identifiers": (r"^temporal_transformer_blocks\.\d+\.attn1$",),
            "cross_attention_block_identifiers": (r"^transformer_blocks\.\d+\.attn2$",),
        },
    }
    runs: dict[str, Callable[[], object]] = {}
    counters: dict[str, Counter] = {}
    for name, identifiers in variants.items():
        reference = copy.deepcopy(base)
        counters[name] = count_calls(
            {
                "spatial": [b.attn1.to_q for b in reference.transformer_blocks],
                "temporal": [b.attn1.to_q for b in reference.temporal_transformer_blocks],
                "cross": [b.attn2.to_q for b in reference.transformer_blocks],
            }
        )
        if identifiers is not None:
            config = diffusers.PyramidAttentionBroadcastConfig(
                spatial_attention_block_skip_range=PAB_INTERVALS["spatial"],
                temporal_attention_block_skip_range=PAB_INTERVALS["temporal"],
                cross_attention_block_skip_range=PAB_INTERVALS["cross"],
                spatial_attention_timestep_skip_range=PAB_WINDOW,
                temporal_attention_timestep_skip_range=PAB_WINDOW,
                cross_attention_timestep_skip_range=PAB_WINDOW,
                current_timestep_callback=lambda: now["t"],
                **identifiers,
            )
            diffusers.apply_pyramid_attention_broadcast(reference, config)

        def run(reference=reference, calls=counters[name]):
            HookRegistry.check_if_exists_or_initialize(reference).reset_stateful_hooks()
            calls.clear()

            def model_fn(x, t, text):
                return reference(x, timestep=t, encoder_hidden_states=text, return_dict=False)[0]

            return sampling_loop(model_fn, args.steps, on_step, device, dtype)

        runs[name] = run
    try:
        import videosys.pab as pab

        enable = pab.enable
    except (ImportError, AttributeError) as err:
        print(f"ours: skipped, videosys-pab is not available ({err}); only diffusers' side is shown")
    else:
        from videosys.models import LATTE_PAB

        # The diffusers hook has no MLP reuse: compare attention broadcast alone.
        attention_only = dataclasses.replace(LATTE_PAB, mlp=None)
        for name, pab_on in (("ours, PAB off", False), ("ours, PAB on", True)):
            model = copy.deepcopy(ours)
            if pab_on:
                enable(model, attention_only)
            queries = {
                kind: [b.attn.inner.to_q for b in model.blocks if b.axis.value == kind]
                for kind in ("spatial", "temporal")
            }
            queries["cross"] = [b.cross.inner.to_q for b in model.blocks if b.cross is not None]
            counters[name] = count_calls(queries)

            def run_ours(model=model, calls=counters[name]):
                calls.clear()
                return sampling_loop(lambda x, t, text: model(x, t, text), args.steps, on_step, device, dtype)

            runs[name] = run_ours
    best = {name: min(times) for name, times in alternate(runs, args.pab_repeats, device).items()}
    for name, seconds in best.items():
        base_time = best["ours, PAB off" if name.startswith("ours") else "diffusers, PAB off"]
        counted = dict(counters[name])
        print(f"{name:40s} {seconds:7.2f} s  speedup {base_time / seconds:.2f}x  computed attention calls {counted}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--pab-repeats", type=int, default=3, help="timed sampling loops per PAB variant")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", choices=["fp32", "fp16", "bf16"], default=None)
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args()
    import diffusers

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    names = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
    dtype = names[args.dtype] if args.dtype else (torch.float16 if device.type == "cuda" else torch.float32)
    print(f"torch {torch.__version__}, diffusers {diffusers.__version__}, device {device}")
    bench_forward(args, diffusers, device, dtype)
    bench_pab(args, diffusers, device, dtype)


if __name__ == "__main__":
    main()
