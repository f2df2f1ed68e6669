"""Training throughput of a small Latte (LatteTransformer): 1 rank vs 2 data-parallel gloo ranks vs 2 DSP ranks,
and gradient checkpointing off vs on with the memory peak.

    python benchmarks/train_throughput.py [--steps 8] [--frames 16] [--size 32] [--width 128] [--repeats 1]

Each variant runs the real trainer (``videosys.train.Trainer``, TorchDDPPlugin) in fresh processes on the
synthetic shapes data and reports the median of the steps after the first two. On CPU every rank
runs one thread (as one GPU per rank), so "2 ranks" has twice the compute of "1 rank". Memory: on CUDA the
allocator's peak; on CPU the growth of the process's peak RSS over its RSS before training.
Needs ColossalAI (see packages/videosys-train/README.md).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import statistics
import tempfile
from pathlib import Path

import torch
import torch.multiprocessing as mp


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _worker(rank: int, world: int, port: int, overrides: list[str], out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world))
    os.environ["LOCAL_RANK"] = str(rank)
    torch.set_num_threads(1)  # one core per rank, like one GPU per rank: 2 ranks get twice the compute
    from videosys.train.cli import TINY_CONFIG
    from videosys.train.config import load_config
    from videosys.train.trainer import Trainer

    trainer = Trainer(load_config(TINY_CONFIG, overrides))
    before = _rss_mib()
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    trainer.fit()
    if rank == 0:
        if torch.cuda.is_available():
            memory = torch.cuda.max_memory_allocated() / 2**20
        else:
            memory = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - before
        Path(out).write_text(json.dumps({"memory_mib": memory}))


def run_variant(root: Path, name: str, world: int, overrides: list[str]) -> dict[str, float]:
    folder = root / name
    overrides = [
        f"output_dir={folder}",
        f"data.csv={root / 'data' / 'data.csv'}",
        f"checkpoint.every={10**6}",
        "ema.enabled=false",
        *overrides,
    ]
    out = folder / "memory.json"
    folder.mkdir(parents=True, exist_ok=True)
    mp.spawn(_worker, args=(world, _free_port(), overrides, str(out)), nprocs=world)
    records = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()][2:]
    return {
        "samples/s": statistics.median(r["samples/s"] for r in records),
        "tokens/s": statistics.median(r["tokens/s"] for r in records),
        "memory_mib": json.loads(out.read_text())["memory_mib"],
    }


def _dsp_available() -> bool:
    try:
        from videosys.dsp import parallelize  # noqa: F401
    except ImportError:
        return False
    return True


def main() -> None:
    try:
        from videosys.train.plugins import import_colossalai

        import_colossalai()
    except ImportError as err:  # e.g. the `gpu` nox session, which runs every benchmark without videosys-train
        print(f"train_throughput: skipped ({err})")
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--depth", type=int, default=2)
    parser.add_argument("--batch", type=int, default=2, help="per data-parallel rank")
    parser.add_argument("--repeats", type=int, default=1, help="run the variants this many times, keep the best")
    args = parser.parse_args()
    common = [
        f"train.steps={args.steps}",
        f"train.batch_size={args.batch}",
        f"data.num_frames={args.frames}",
        "data.frame_interval=1",
        f"data.size={args.size}",
        "data.synthetic.num_videos=64",
        f"data.synthetic.frames={args.frames}",
        f"data.synthetic.size={args.size}",
        f"model.kwargs={{num_layers: {args.depth}, num_heads: 4, head_dim: {args.width // 4}, patch_size: 2}}",
    ]
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else f"CPU ({os.cpu_count()} cores)"
    tokens = args.frames * (args.size // 2) ** 2
    print(
        f"train throughput on {device}: {args.frames}x{args.size}x{args.size} clips = {tokens} tokens/sample, "
        f"width {args.width}, {2 * args.depth} blocks, {args.batch} samples per DP rank, {args.steps} steps"
    )
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        variants = {
            "1 rank": (1, []),
            "2 ranks DP (gloo)": (2, []),
        }
        if _dsp_available():
            variants["2 ranks DSP sp=2 (gloo)"] = (2, ["parallel.sp_size=2"])
        variants["1 rank, grad ckpt"] = (1, ["train.gradient_checkpointing=true"])
        gpus = torch.cuda.device_count() if torch.cuda.is_available() else None
        results = {}
        for repeat in range(args.repeats):  # interleaved, best of each: other load on the machine shifts less
            for name, (world, extra) in variants.items():
                if gpus is not None and world > gpus:
                    if repeat == 0:
                        print(f"{name}: skipped, needs {world} GPUs (one per rank), this machine has {gpus}")
                    continue
                run = run_variant(root, f"{name.replace(' ', '_')}_{repeat}", world, common + extra)
                best = results.get(name)
                results[name] = run if best is None or run["samples/s"] > best["samples/s"] else best
    base = results["1 rank"]
    print(f"{'variant':28s} {'samples/s':>10s} {'tokens/s':>10s} {'x 1 rank':>9s} {'mem MiB':>9s}")
    for name, r in results.items():
        ratio = r["samples/s"] / base["samples/s"]
        print(f"{name:28s} {r['samples/s']:10.2f} {r['tokens/s']:10.0f} {ratio:9.2f} {r['memory_mib']:9.1f}")
    ckpt = results["1 rank, grad ckpt"]
    print(
        f"gradient checkpointing: memory x{ckpt['memory_mib'] / max(base['memory_mib'], 1e-9):.2f}, "
        f"speed x{ckpt['samples/s'] / base['samples/s']:.2f}"
    )
    if not _dsp_available():
        print("DSP variant skipped: videosys.dsp.parallelize is not available in this install")


if __name__ == "__main__":
    main()
