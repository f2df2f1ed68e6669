"""Open-Sora-Plan v1.2 (full 3-D attention) at 29x480p proportions on 2 ranks: Ulysses, bytes against the closed form.

    python benchmarks/opensora_plan_dsp.py             # launches itself on 2 gloo ranks (or every GPU, NCCL)
    torchrun --nproc_per_node 2 benchmarks/opensora_plan_dsp.py --width 96

Open-Sora-Plan v1.2 at 29x480p: the CausalVAE gives 8 latent frames of 60x80, patches of 2x2 give 30x40 = 1200
tokens per frame, T*S = 9600 tokens for a width of 2304 (T*S / C = 4.17), batch 2 (guidance). Every block
attends over all T*S tokens, so what bounds the cost is T*S against C; the proxy keeps T, the 3:4 grid and
T*S / C at a width a CPU can run (``--width``), with the real :class:`~videosys.models.OpenSoraPlanT2V`
(RoPE3D, text mask, cross-attention). FULL attention has no axis to rest on: under ``videosys.dsp`` it runs
Ulysses (heads all-to-all around the attention, the heads dividing by the ranks) whatever the mode, so the
runs differ only in the sharded axis, which sets the padding. Bytes are what this rank feeds into collectives
per forward, beside the closed form: 4 M/N per full attention (q, k, v, out) plus M/N for the final gather,
with M the activation size on the padded grid. Then a whole 100-step generation with the release's PAB
defaults (``videosys.models.OPENSORA_PLAN_V12_PAB``: full 2, cross 6 on (100, 850)): a reused full attention
skips its four all-to-alls, so the bytes are 4 M/N per full attention computed plus M/N per step.
"""

from __future__ import annotations

import argparse
import copy
import math
import os

import torch
import torch.distributed as dist
from dsp_vs_ulysses import generations, init_ranks, relaunch, round_robin

import videosys.pab as pab
from videosys.dsp import parallelize
from videosys.models import OPENSORA_PLAN_V12_PAB, OpenSoraPlanT2V

RUNS = {"ulysses/spatial": "spatial", "ulysses/temporal": "temporal"}  # name: resting (sharded) axis
OSP_29X480P = {"frames": 8, "grid": (30, 40), "width": 2304}  # latent frames, patch grid, hidden size
STEPS = 100  # the release samples with EulerAncestral, 100 steps
TIMESTEPS = torch.linspace(999, 0, STEPS).tolist()


def proxy_grid(width: int) -> tuple[int, int]:
    """A 3:4 patch grid that, with the release's 8 frames, keeps its T*S / C at ``width``."""
    rows, cols = OSP_29X480P["grid"]
    scale = math.sqrt(width / OSP_29X480P["width"])
    return max(1, round(rows * scale)), max(1, round(cols * scale))


def pab_generations(model: OpenSoraPlanT2V, inputs: tuple, device: torch.device) -> dict[str, tuple[int, float, int]]:
    """Per run, bytes fed to collectives and seconds over a whole generation with the release's PAB defaults, and
    how many full attentions it computed."""
    models = {}
    for name, axis in RUNS.items():
        models[name] = copy.deepcopy(model)
        pab.enable(models[name], OPENSORA_PLAN_V12_PAB)
        parallelize(models[name], resting_axis=axis)
    measured = generations(models, TIMESTEPS, inputs, device)
    return {name: (*measured[name], pab.stats(run)["full"]["computed"]) for name, run in models.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--width", type=int, default=96, help="hidden size C (Open-Sora-Plan v1.2: 2304)")
    parser.add_argument("--heads", type=int, default=4, help="the head dim (width / heads) must divide by 6")
    parser.add_argument("--depth", type=int, default=2, help="full-attention blocks (Open-Sora-Plan v1.2: 32)")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per run")
    args = parser.parse_args()
    if "RANK" not in os.environ:  # not under torchrun: relaunch under it
        relaunch(__file__)
        return
    rank, ranks, device, dtype = init_ranks()

    torch.manual_seed(0)  # same weights and inputs on every rank
    rows, cols = proxy_grid(args.width)
    frames, batch, text = OSP_29X480P["frames"], 2, 32
    model = OpenSoraPlanT2V(
        num_layers=args.depth, num_heads=args.heads, head_dim=args.width // args.heads, caption_channels=64
    )
    model = model.eval().to(device, dtype)
    text_mask = torch.ones(batch, text, dtype=torch.long, device=device)
    text_mask[1, text // 2 :] = 0  # a shorter prompt, padded
    inputs = (
        torch.randn(batch, 4, frames, 2 * rows, 2 * cols, device=device, dtype=dtype),
        torch.tensor([700.0] * batch, device=device),
        torch.randn(batch, text, 64, device=device, dtype=dtype),
        text_mask,
    )
    models = {name: parallelize(copy.deepcopy(model), resting_axis=axis) for name, axis in RUNS.items()}
    models["1 rank"] = model

    sent, median, diffs = round_robin(models, RUNS, inputs, False, device, args.steps)
    generation = pab_generations(model, inputs, device)
    if rank != 0:
        dist.destroy_process_group()
        return

    tokens = rows * cols
    mib = 2**20

    def shard(axis: str) -> float:
        """M/N in bytes on the grid padded along the sharded axis."""
        t, s = (frames, -(-tokens // ranks) * ranks) if axis == "spatial" else (-(-frames // ranks) * ranks, tokens)
        return batch * t * s * args.width * dtype.itemsize / ranks

    print(
        f"OpenSoraPlanT2V proxy of 29x480p: {ranks} ranks, {device.type}, {dtype}; B={batch} T={frames} "
        f"S={rows}x{cols}={tokens} C={args.width} (T*S/C={frames * tokens / args.width:.2f}; release "
        f"9600/2304=4.17) heads={args.heads}, {args.depth} full-attention blocks; forward, median of {args.steps}"
    )
    print(f"{'run':<18}{'M/N MiB':>9}{'MiB/step':>10}{'closed form':>12}{'ratio':>7}{'s/step':>9}{'vs 1 rank':>10}"
          f"{'max |diff|':>12}")  # fmt: skip
    for name in models:
        line = f"{name:<18}"
        if name in RUNS:
            unit = shard(RUNS[name])
            forward = sent[name][0]
            closed = (4 * args.depth + 1) * unit
            line += f"{unit / mib:>9.3f}{forward / mib:>10.3f}{closed / mib:>12.3f}{forward / closed:>7.3f}"
        else:
            line += f"{'-':>9}{'-':>10}{'-':>12}{'-':>7}"
        line += f"{median[name]:>9.3f}{median['1 rank'] / median[name]:>9.2f}x"
        line += f"{diffs[name]:>12.2e}" if name in RUNS else f"{'-':>12}"
        print(line)
    print(f"a {STEPS}-step generation with the release's PAB defaults (full 2, cross 6 on (100, 850)):")
    print(
        f"{'run':<18}{'full computed':>14}{'MiB/generation':>15}{'closed form':>12}{'ratio':>7}{'vs no PAB':>10}"
        f"{'s/generation':>13}"
    )
    for name, (sent_bytes, seconds, computed) in generation.items():
        unit = shard(RUNS[name])
        closed = (4 * computed + STEPS) * unit
        without = (4 * args.depth + 1) * STEPS * unit
        print(
            f"{name:<18}{f'{computed}/{args.depth * STEPS}':>14}{sent_bytes / mib:>15.2f}{closed / mib:>12.2f}"
            f"{sent_bytes / closed:>7.3f}{sent_bytes / without:>10.3f}{seconds:>13.2f}"
        )
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
