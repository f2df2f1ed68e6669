"""STDiT3 with Open-Sora 480p proportions on 2 ranks: DSP (each resting axis) vs Ulysses variants, side by side.

    python benchmarks/stdit3_dsp.py             # launches itself on 2 gloo ranks (or every GPU, NCCL)
    torchrun --nproc_per_node 2 benchmarks/stdit3_dsp.py --width 192

Open-Sora 1.2 at 480p (480x854), 51 frames: the VAE gives 15 latent frames of 60x106, patches of 2x2 give
S = 30x53 = 1590 tokens per frame for a width of 1152 (S / C = 1.38), batch 2 (guidance). The proxy keeps T,
the 9:16 grid and S / C at a width a CPU can run (``--width``), with the real STDiT3 (x_mask, fps, text) and
its real layer layout. Modes, round-robin in one run on the same weights and inputs:
``dsp/spatial`` and ``dsp/temporal`` (DSP, each resting axis), ``ulysses-resting/spatial`` (Open-Sora's
own scheme: Ulysses on spatial attention only) and ``ulysses/spatial`` (Ulysses on every self-attention,
as xDiT and diffusers), and the unparallelized model on rank 0. Bytes are what this rank feeds into
collectives per forward; closed forms per spatial + temporal pair: DSP 2M/N, Ulysses-resting 4M/N,
Ulysses 8M/N, with M the activation size on the padded grid, plus the final gather. Then a whole
30-step generation per run with Open-Sora's PAB defaults (``videosys.models.OPENSORA_PAB``; MLP reuse on
the proxy's layers): a reused attention skips its collectives, and temporal attention is reused twice as
often as spatial, so the resting axis decides what PAB saves.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import math
import os

import torch
import torch.distributed as dist
from dsp_vs_ulysses import generations, init_ranks, relaunch, round_robin

import videosys.pab as pab
from videosys.dsp import parallelize
from videosys.models import OPENSORA_PAB
from videosys.models.transformers import STDiT3

RUNS = {  # name: (mode, resting axis, closed-form factor per layer pair in M/N)
    "dsp/spatial": ("dsp", "spatial", 2),
    "dsp/temporal": ("dsp", "temporal", 2),
    "ulysses-resting/spatial": ("ulysses-resting", "spatial", 4),
    "ulysses/spatial": ("ulysses", "spatial", 8),
}
OPENSORA_480P = {"frames": 15, "grid": (30, 53), "width": 1152}  # latent frames, patch grid, hidden size


def proxy_grid(width: int) -> tuple[int, int]:
    """A 9:16 patch grid whose token count per frame keeps Open-Sora 480p's S / C at ``width``."""
    rows, cols = OPENSORA_480P["grid"]
    tokens = rows * cols * width / OPENSORA_480P["width"]
    scale = math.sqrt(tokens / (rows * cols))
    return max(1, round(rows * scale)), max(1, round(cols * scale))


def _rflow_480p_51(num_steps: int = 30) -> list[float]:
    """Open-Sora 1.2's timesteps at 480x854, 51 frames: t' = r t / (1 + (r - 1) t), r from resolution and frames."""
    r = math.sqrt(480 * 854 / 512**2) * math.sqrt(51 // 17 * 5)
    return [1000 * r * t / (1 + (r - 1) * t) for t in (1 - i / num_steps for i in range(num_steps))]


RFLOW_480P_51 = _rflow_480p_51()


def pab_generations(model: STDiT3, inputs: tuple, device: torch.device) -> dict[str, tuple[int, float]]:
    """Per run, bytes fed to collectives and seconds for a whole generation with Open-Sora's PAB defaults.

    The runs advance step by step in turn (round-robin), so load on the machine hits them alike.
    """
    config = dataclasses.replace(
        OPENSORA_PAB, mlp=dataclasses.replace(OPENSORA_PAB.mlp, layers=tuple(range(len(model.blocks) // 2)))
    )
    models = {}
    for name, (mode, axis, _) in RUNS.items():
        models[name] = copy.deepcopy(model)
        pab.enable(models[name], config)
        parallelize(models[name], resting_axis=axis, mode=mode)
    return generations(models, RFLOW_480P_51, inputs, device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--width", type=int, default=96, help="hidden size C (Open-Sora: 1152)")
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--depth", type=int, default=2, help="spatial + temporal block pairs (Open-Sora: 28)")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per mode")
    args = parser.parse_args()
    if "RANK" not in os.environ:  # not under torchrun: relaunch under it
        relaunch(__file__)
        return
    rank, ranks, device, dtype = init_ranks()

    torch.manual_seed(0)  # same weights and inputs on every rank
    rows, cols = proxy_grid(args.width)
    frames, batch, text = OPENSORA_480P["frames"], 2, 32
    model = STDiT3(depth=args.depth, hidden_size=args.width, num_heads=args.heads, caption_channels=64).eval()
    model = model.to(device, dtype)
    x_mask = torch.ones(batch, frames, dtype=torch.bool, device=device)
    x_mask[:, 0] = False  # the first frame given (image-to-video), as Open-Sora's mask strategy does
    inputs = (
        torch.randn(batch, 4, frames, 2 * rows, 2 * cols, device=device, dtype=dtype),
        torch.tensor([700.0] * batch, device=device),
        torch.randn(batch, text, 64, device=device, dtype=dtype),
        torch.ones(batch, text, dtype=torch.long, device=device),
        x_mask,
        24.0,
        480,
        854,
    )
    models = {name: parallelize(copy.deepcopy(model), resting_axis=run[1], mode=run[0]) for name, run in RUNS.items()}
    models["1 rank"] = model

    sent, median, diffs = round_robin(models, RUNS, inputs, False, device, args.steps)
    generation = pab_generations(model, inputs, device)
    if rank != 0:
        dist.destroy_process_group()
        return

    tokens = rows * cols
    padded = batch * (-(-frames // ranks) * ranks) * (-(-tokens // ranks) * ranks) * args.width * dtype.itemsize
    shard = padded / ranks  # M/N on the padded grid
    mib = 2**20
    print(
        f"STDiT3 proxy of Open-Sora 480p/51 frames: {ranks} ranks, {device.type}, {dtype}; B={batch} T={frames} "
        f"S={rows}x{cols}={tokens} C={args.width} (S/C={tokens / args.width:.2f}; Open-Sora 1590/1152=1.38) "
        f"heads={args.heads}, {args.depth} pairs; M/N = {shard / mib:.2f} MiB; forward, median of {args.steps}"
    )
    print(f"{'run':<25}{'MiB/step':>10}{'attn MiB':>10}{'closed form':>12}{'ratio':>7}{'s/step':>9}{'vs dsp/S':>9}"
          f"{'vs 1 rank':>10}{'max |diff|':>12}")  # fmt: skip
    for name in models:
        line = f"{name:<25}"
        if name in RUNS:
            forward, _, attention = sent[name]
            closed = RUNS[name][2] * args.depth * shard
            line += f"{forward / mib:>10.2f}{attention / mib:>10.2f}{closed / mib:>12.2f}{attention / closed:>7.3f}"
        else:
            line += f"{'-':>10}{'-':>10}{'-':>12}{'-':>7}"
        line += f"{median[name]:>9.3f}{median[name] / median['dsp/spatial']:>9.2f}"
        line += f"{median['1 rank'] / median[name]:>9.2f}x"
        line += f"{diffs[name]:>12.2e}" if name in RUNS else f"{'-':>12}"
        print(line)
    print(f"with Open-Sora's PAB defaults, {len(RFLOW_480P_51)} rectified-flow steps (480p, 51 frames):")
    print(f"{'run':<25}{'MiB/generation':>15}{'s/generation':>14}{'vs dsp/S':>9}")
    for name, (sent_bytes, seconds) in generation.items():
        print(f"{name:<25}{sent_bytes / mib:>15.1f}{seconds:>14.2f}{seconds / generation['dsp/spatial'][1]:>9.2f}")
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
