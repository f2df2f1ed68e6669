"""``videosys`` command line: ``videosys generate --model NAME --path DIR --prompt ... --out FILE``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from .registry import UnknownModelError, get_model, list_models, load

__all__ = ["main"]

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="videosys", description="Generate videos and images with VideoSys models.")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("models", help="list the registered models")
    gen = commands.add_parser("generate", help="sample from a model checkpoint folder")
    gen.add_argument("--model", required=True, help=f"registered model name: {', '.join(list_models())}")
    gen.add_argument("--path", required=True, type=Path, help="checkpoint folder in the diffusers layout")
    gen.add_argument(
        "--prompt", required=True, action="append", help="text prompt, or a class id/name for DiT; repeatable"
    )
    gen.add_argument("--out", required=True, type=Path, help="output file: .mp4/.gif (videos) or .png/.jpg (images)")
    gen.add_argument("--steps", type=int, help="denoising steps (model default if omitted)")
    gen.add_argument("--cfg", type=float, help="classifier-free guidance scale (model default if omitted)")
    gen.add_argument("--seed", type=int, default=0)
    gen.add_argument("--frames", type=int, help="video frames (text-to-video models)")
    gen.add_argument("--height", type=int, help="video height in pixels (text-to-video models)")
    gen.add_argument("--width", type=int, help="video width in pixels (text-to-video models)")
    gen.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    gen.add_argument("--dtype", choices=sorted(DTYPES), help="default: fp16 on CUDA, fp32 elsewhere")
    gen.add_argument("--pab", action="store_true", help="Pyramid Attention Broadcast with the model's defaults")
    gen.add_argument("--allow-bin", action="store_true", help="read pickled .bin weights (trusted folders only)")
    return parser


def _call_kwargs(args: argparse.Namespace, defaults: dict[str, Any], video: bool) -> dict[str, Any]:
    kwargs = dict(defaults)
    overrides = {"num_inference_steps": args.steps, "guidance_scale": args.cfg}
    if video:
        overrides.update(num_frames=args.frames, height=args.height, width=args.width)
    elif any(v is not None for v in (args.frames, args.height, args.width)):
        raise ValueError("--frames/--height/--width apply to text-to-video models; DiT's size is its checkpoint's")
    kwargs.update({k: v for k, v in overrides.items() if v is not None})
    return kwargs


def _enable_pab(pipeline: Any, spec: Any) -> None:
    if spec.pab is None:
        raise ValueError(f"model {spec.name} has no published PAB defaults")
    import videosys.pab as pab

    pab.enable(pipeline.transformer, spec.pab)


def _write(results: Any, out: Path, video: bool, fps: float) -> list[Path]:
    from videosys.core.io import save_video

    if video:
        paths = [out] if len(results) == 1 else [out.with_stem(f"{out.stem}_{i}") for i in range(len(results))]
        return [save_video(frames, path, fps=fps) for frames, path in zip(results, paths)]
    if out.suffix.lower() in IMAGE_SUFFIXES:
        import imageio.v3 as iio

        paths = [out] if len(results) == 1 else [out.with_stem(f"{out.stem}_{i}") for i in range(len(results))]
        out.parent.mkdir(parents=True, exist_ok=True)
        for image, path in zip(results, paths):
            iio.imwrite(path, image)
        return paths
    return [save_video(results, out, fps=1)]  # images as the frames of one .gif/.mp4


def generate(args: argparse.Namespace) -> list[Path]:
    spec = get_model(args.model)
    video = spec.task == "text-to-video"
    if video and args.out.suffix.lower() not in (".mp4", ".gif"):
        raise ValueError(f"{spec.name} makes videos: --out must end in .mp4 or .gif, got {args.out.name!r}")
    kwargs = _call_kwargs(args, dict(spec.defaults), video)
    dtype = DTYPES[args.dtype] if args.dtype else None
    pipeline = load(spec.name, args.path, device=args.device, dtype=dtype, allow_bin=args.allow_bin)
    if args.pab:
        _enable_pab(pipeline, spec)
    results = pipeline(args.prompt, seed=args.seed, **kwargs)
    return _write(results, args.out, video, fps=getattr(pipeline, "fps", 8))


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "models":
        for name in list_models():
            print(f"{name:16s} {get_model(name).description}")
        return 0
    try:
        paths = generate(args)
    except (UnknownModelError, ValueError, FileNotFoundError, ImportError) as err:
        parser.exit(2, f"videosys: error: {err}\n")
    for path in paths:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
