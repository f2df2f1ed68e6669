"""``videosys`` command line: ``videosys generate``, ``videosys models``, ``videosys --version``.

Errors end the run with one line on stderr and a non-zero exit (``--debug`` shows the traceback). Under
``torchrun ... -m videosys.models generate --dsp`` the backbone is sharded with videosys.dsp, rank 0
writes the file and an error on any rank stops every rank, printed once.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
import traceback
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from .registry import DEFAULT_MODEL, MODELS, ModelSpec, list_models
from .request import DTYPES, IMAGE_SUFFIXES, Request, validate

if TYPE_CHECKING:
    import torch

    from .ranks import Ranks

__all__ = ["describe_model", "describe_pab", "generate", "main"]

PROG = "videosys"


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (argparse prints the whole usage before them)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{PROG}: error: {message} (see {self.prog} --help)\n")


def _parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = _Parser(prog=PROG, description="Generate videos and images with VideoSys models.")
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__} (videosys-models)")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    commands.add_parser("models", help="list the registered models, their defaults and weights folders")
    gen = commands.add_parser("generate", help="sample a video (or an image) from a model's weights")
    default = f" (default: {DEFAULT_MODEL})" if DEFAULT_MODEL else ""
    gen.add_argument("--model", default=DEFAULT_MODEL, help=f"one of {', '.join(list_models())}{default}")
    gen.add_argument("--weights", "--path", dest="weights", type=Path, help="weights folder in the official layout")
    gen.add_argument("--prompt", help="text prompt (text-to-video models)")
    gen.add_argument("--class", dest="class_label", help="class name or index (class-conditional models: DiT)")
    gen.add_argument("--out", type=Path, default=Path("video.mp4"), help="output .mp4 or .gif (DiT: also .png/.jpg)")
    gen.add_argument("--steps", type=int, help="denoising steps (default: the model's)")
    gen.add_argument("--cfg", type=float, help="classifier-free guidance scale (default: the model's)")
    gen.add_argument("--seed", type=int, default=0, help="noise seed; the same seed gives the same video on any device")
    gen.add_argument("--frames", type=int, help="frames (text-to-video models; default: the model's)")
    gen.add_argument(
        "--resolution",
        help="SIZE or WIDTHxHEIGHT in pixels, or a named size where the model has them (Open-Sora 144p..720p, "
        "Open-Sora-Plan v1.2 480p, 720p)",
    )
    gen.add_argument("--aspect-ratio", help="height:width with a named --resolution, e.g. 9:16 (Open-Sora)")
    gen.add_argument("--duration", help="named length, e.g. 2s = 51 frames at 24 fps (Open-Sora)")
    gen.add_argument("--image", type=Path, help="animate this image: it becomes the first frame (Open-Sora)")
    gen.add_argument("--video", type=Path, help="continue this clip: its last frames begin the video (Open-Sora)")
    gen.add_argument("--keep-frames", type=int, help="with --video: latent frames of the clip to keep (default: all)")
    gen.add_argument(
        "--dtype", choices=sorted(DTYPES), help="default: fp16 on CUDA (Open-Sora, OSP v1.2: bf16), fp32 on CPU"
    )
    gen.add_argument("--device", default="cuda" if _cuda() else "cpu", help="cpu, cuda or cuda:N")
    gen.add_argument("--pab", action="store_true", help="Pyramid Attention Broadcast with the model's defaults")
    gen.add_argument("--pab-config", type=Path, help="PAB settings from a JSON file (implies --pab)")
    gen.add_argument("--dsp", action="store_true", help="shard the backbone over torchrun's ranks (videosys-dsp)")
    gen.add_argument("--allow-bin", action="store_true", help="read pickled .bin weights (trusted folders only)")
    gen.add_argument("--debug", action="store_true", help="show tracebacks and library warnings")
    return parser


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _quiet() -> None:
    """Silence what a user cannot act on: hub access, loading bars, accelerate and dtype advice."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    warnings.filterwarnings("ignore")
    import diffusers
    import transformers

    for library in (diffusers, transformers):
        library.utils.logging.set_verbosity_error()
        library.utils.logging.disable_progress_bar()
    logging.getLogger("torch.distributed").setLevel(logging.ERROR)


def describe_pab(config: Any) -> str:
    """``"spatial every 2 in (100, 800), ...; MLP reuse of layers 0, 1, ..."`` for ``videosys models``."""
    kinds = [
        f"{kind} every {rule.interval} in ({rule.window[0]:g}, {rule.window[1]:g})"
        for kind in ("spatial", "temporal", "full", "cross")
        if (rule := getattr(config, kind)) is not None
    ]
    mlp = f"; MLP reuse of layers {', '.join(map(str, config.mlp.layers))}" if config.mlp is not None else ""
    return ", ".join(kinds) + mlp


def describe_model(spec: ModelSpec) -> list[str]:
    """The lines ``videosys models`` prints for one model."""
    names = {
        "num_inference_steps": "steps",
        "guidance_scale": "cfg",
        "num_frames": "frames",
        "resolution": "resolution",
        "aspect_ratio": "aspect ratio",
        "duration": "duration",
        "use_dynamic_cfg": "dynamic cfg",
    }
    defaults = [f"{names[k]} {v}" for k, v in spec.defaults.items() if k in names]
    if "height" in spec.defaults:
        defaults.append(f"resolution {spec.defaults['width']}x{spec.defaults['height']}")
    pipeline = spec.pipeline_class()
    return [
        f"{spec.name}  ({spec.task}) {spec.description}",
        f"    defaults: {', '.join(defaults)}",
        f"    PAB: {describe_pab(spec.pab) if spec.pab is not None else 'no published defaults (use --pab-config)'}",
        f"    weights folder ({pipeline.OFFICIAL}): {pipeline.layout()}",
    ]


def _write(result: Any, out: Path, fps: float) -> None:
    """A video (or DiT's images as frames) to .mp4/.gif, or the first image to .png/.jpg."""
    from videosys.core.io import save_video

    if out.suffix.lower() in IMAGE_SUFFIXES:
        import imageio.v3 as iio

        iio.imwrite(out, result[0])
    else:
        save_video(result, out, fps=fps)


def _pab_saved(model: Any) -> str:
    import videosys.pab as pab

    counts = pab.stats(model)
    reused = sum(c["reused"] for c in counts.values())
    calls = sum(c["reused"] + c["computed"] for c in counts.values())
    return f"PAB saved {reused} of {calls} attention/MLP branch calls"


def generate(request: Request) -> str:
    """Load, sample and (on rank 0) write; returns the summary line."""
    from .ranks import ranks

    with ranks(request.dsp, request.device, _report) as (group, device):
        load_s, sample_s, pab_note = _run(request, group, device)
    steps = request.call["num_inference_steps"]
    ranks_note = f" on {group.world} ranks (DSP)" if request.dsp else ""
    return (
        f"{PROG}: wrote {request.out} in {sample_s:.1f} s{ranks_note} (loading {load_s:.1f} s), "
        f"{steps} steps, {pab_note}"
    )


def _run(request: Request, group: Ranks, device: torch.device) -> tuple[float, float, str]:
    """Every phase of :func:`generate` on this rank; returns (load seconds, sample seconds, PAB note).

    Its own function so that the pipeline, which holds the process group once DSP parallelized it, is gone when
    :func:`~videosys.models.ranks.ranks` leaves the group.
    """
    from .registry import load

    error, pipeline = None, None
    started = time.perf_counter()
    try:
        pipeline = load(
            request.spec.name,
            request.weights,
            device=device,
            dtype=request.dtype,
            allow_bin=request.allow_bin,
            **request.load_options,
        )
        if request.pab is not None:
            import videosys.pab as pab

            pab.enable(pipeline.transformer, request.pab)
        if request.dsp:
            import videosys.dsp as dsp

            dsp.parallelize(pipeline.transformer)
    except Exception as err:
        error = err
    group.agree(error)
    loaded = time.perf_counter()
    result = None
    try:
        output = pipeline(request.condition, progress=group.is_writer, **request.call)
        result = output[0] if request.video else output
    except Exception as err:
        error = err
    group.agree(error)
    sampled = time.perf_counter()
    try:
        if group.is_writer:
            _write(result, request.out, getattr(pipeline, "fps", 1))
    except Exception as err:
        error = err
    group.agree(error)
    pab_note = _pab_saved(pipeline.transformer) if request.pab is not None else "PAB off"
    return loaded - started, sampled - loaded, pab_note


def _report(message: str) -> None:
    print(f"{PROG}: error: {message}", file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    debug = getattr(args, "debug", False)
    writer = os.environ.get("RANK", "0") == "0"
    try:
        if args.command == "models":
            for name in list_models():
                print("\n".join(describe_model(MODELS[name])))
            return 0
        if not debug:
            _quiet()
        summary = generate(validate(args))
    except KeyboardInterrupt:
        return 130
    except Exception as err:
        if debug:
            traceback.print_exc()
        if writer and not getattr(err, "reported", False):
            _report(str(err))
        return 1
    if writer:
        print(summary)
    return 0
