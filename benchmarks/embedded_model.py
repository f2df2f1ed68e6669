"""The embedded default model (``videosys-tiny``): prompt following over the whole grammar, and PAB on vs off.

    python benchmarks/embedded_model.py [--seeds 2] [--repeats 3] [--weights FILE] [--cfg SCALE]

Prompt following: one clip per (colour, shape, direction) combination and seed, each measured from its
pixels by the models tests' ``pixel_measure`` (dominant colour, centroid direction, and for large shapes
the bounding-box fill); reported separately for the combinations held out of training.
PAB: every prompt batch is generated with PAB off and on in lockstep (order flipped each round, fastest
of ``--repeats``), on one torch thread; the headline ratio uses this thread's CPU time, which does not
count time other processes hold the core; the difference is the PSNR of each PAB clip against the clip
without PAB (per frame on [0, 1], ``20 log10(1 / sqrt(mse))``, averaged; 100 dB when equal).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from videosys.models import get_model, load
from videosys.models.embedded import read_weights
from videosys.models.embedded.pipeline import WEIGHTS
from videosys.pab import pab, stats

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "packages" / "videosys-models" / "tests"))
from pixel_measure import measure

COLORS = ("red", "green", "blue", "yellow", "white")
SHAPES = ("square", "circle", "triangle")
DIRECTIONS = ("left", "right", "up", "down")


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Mean per-frame PSNR of two uint8 clips on the [0, 1] scale."""
    values = []
    for x, y in zip(a.astype(np.float64) / 255, b.astype(np.float64) / 255):
        mse = float(((x - y) ** 2).mean())
        values.append(100.0 if mse < 1e-10 else 20 * np.log10(1 / np.sqrt(mse)))
    return float(np.mean(values))


def score(prompts: list[tuple[str, str, str, str]], videos: list[np.ndarray]) -> dict[str, list[bool]]:
    """Per-prompt hits for colour, direction, both, and (large shapes only) shape."""
    hits: dict[str, list[bool]] = {"color": [], "direction": [], "color+direction": [], "shape (large)": []}
    for (color, shape, direction, size), video in zip(prompts, videos):
        try:
            got = measure(video)
        except AssertionError:  # no foreground in some frame: a miss on every count
            got = None
        ok_color = got is not None and got.color == color
        ok_direction = got is not None and got.direction == direction
        hits["color"].append(ok_color)
        hits["direction"].append(ok_direction)
        hits["color+direction"].append(ok_color and ok_direction)
        if size == "large":
            hits["shape (large)"].append(got is not None and got.shape == shape)
    return hits


def timed(pipeline: Callable[..., list[np.ndarray]], *args: object, **kwargs: object) -> tuple[list, float, float]:
    """The pipeline's output, this thread's CPU seconds and the wall seconds it took."""
    cpu, wall = time.thread_time(), time.perf_counter()
    out = pipeline(*args, **kwargs)
    return out, time.thread_time() - cpu, time.perf_counter() - wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=get_model("videosys-tiny").defaults["num_inference_steps"])
    parser.add_argument("--weights", type=Path, default=None, help="a weights file (default: the shipped one)")
    parser.add_argument("--cfg", type=float, default=None, help="guidance scale (default: the weights file's)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    _, config = read_weights(args.weights or WEIGHTS)
    held_out = {tuple(c.split()) for c in config["held_out"]}
    spec = get_model("videosys-tiny")
    base, accelerated = load("videosys-tiny", args.weights), load("videosys-tiny", args.weights)
    sizes = ("large", "small")
    combos = [(c, s, d) for c in COLORS for s in SHAPES for d in DIRECTIONS]
    prompts = [(*combo, sizes[i % 2]) for i, combo in enumerate(combos)]
    texts = [f"a {size} {c} {s} moving {d}" for c, s, d, size in prompts]
    pipes = {"off": base, "on": accelerated}
    results: dict[str, list[list[np.ndarray]]] = {"off": [], "on": []}
    cpu, wall = {"off": 0.0, "on": 0.0}, {"off": 0.0, "on": 0.0}
    with pab(accelerated.transformer, spec.pab):
        for seed in range(args.seeds):
            best = {key: (float("inf"), float("inf")) for key in pipes}
            for r in range(args.repeats):
                for key in ("off", "on") if r % 2 == 0 else ("on", "off"):
                    videos, c, w = timed(
                        pipes[key], texts, seed=seed, num_inference_steps=args.steps, guidance_scale=args.cfg
                    )
                    best[key] = (min(best[key][0], c), min(best[key][1], w))
                    if r == 0:
                        results[key].append(videos)
            for key in pipes:
                cpu[key] += best[key][0]
                wall[key] += best[key][1]
        counts = stats(accelerated.transformer)
    n = len(texts) * args.seeds
    scale = base.config.get("guidance_scale", 1.0) if args.cfg is None else args.cfg
    print(
        f"videosys-tiny ({args.weights or 'shipped'}, step {config.get('trained_steps')}), {args.steps} DDIM steps, "
        f"guidance {scale}, {len(texts)} prompts x {args.seeds} seeds, one thread"
    )
    for key in ("off", "on"):
        flat = [v for batch in results[key] for v in batch]
        groups = {"seen": [], "held out": []}
        for i, video in enumerate(flat):
            p = prompts[i % len(prompts)]
            groups["held out" if p[:3] in held_out else "seen"].append((p, video))
        print(f"PAB {key}: {cpu[key] / n * 1000:.1f} ms CPU / {wall[key] / n * 1000:.1f} ms wall per clip")
        for group, items in groups.items():
            hits = score([p for p, _ in items], [v for _, v in items])
            line = ", ".join(f"{k} {sum(h)}/{len(h)} ({100 * sum(h) / len(h):.0f}%)" for k, h in hits.items() if h)
            print(f"  {group:8s} ({len(items)} clips): {line}")
    diffs = [psnr(a, b) for ba, bb in zip(results["off"], results["on"]) for a, b in zip(ba, bb)]
    print(f"PAB speedup: {cpu['off'] / cpu['on']:.2f}x CPU time, {wall['off'] / wall['on']:.2f}x wall")
    print(f"PAB vs off: PSNR mean {np.mean(diffs):.1f} dB, min {np.min(diffs):.1f} dB; branch calls {counts}")


if __name__ == "__main__":
    main()
