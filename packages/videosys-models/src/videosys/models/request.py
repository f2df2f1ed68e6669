"""A ``videosys generate`` request, checked in full before anything is loaded.

Every option is validated here, from the command line alone (and the weights folder's layout), so a bad
value ends the run in a second with one line naming it, not after minutes of loading weights.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .registry import DEFAULT_MODEL, MODELS, ModelSpec, get_model

__all__ = [
    "DTYPES",
    "MODEL_OPTIONS",
    "Request",
    "UsageError",
    "check_device",
    "parse_resolution",
    "read_clip",
    "read_image",
    "read_pab_config",
    "validate",
]

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
VIDEO_SUFFIXES = (".mp4", ".gif")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


class UsageError(ValueError):
    """A command-line option with a value the run cannot use."""


@dataclass(frozen=True)
class Request:
    """What to generate, with every value checked and the model's defaults filled in."""

    spec: ModelSpec
    weights: Path | None
    """None for a model whose weights ship in the package (``ModelSpec.bundled``)."""
    condition: str | int
    """The prompt (text-to-video) or class name / id (class-to-image)."""
    call: dict[str, Any]
    """Keyword arguments of the pipeline call (steps, guidance, frames, size, seed)."""
    load_options: dict[str, Any]
    """Keyword arguments of the pipeline's ``from_pretrained`` the call implies (Open-Sora-Plan: which transformer
    folder of the release ``--frames`` and ``--resolution`` name)."""
    device: torch.device
    dtype: torch.dtype | None
    out: Path
    pab: Any
    """A ``videosys.pab.PABConfig``, or None."""
    dsp: bool
    allow_bin: bool

    @property
    def video(self) -> bool:
        return self.spec.task == "text-to-video"


def check_device(name: str) -> torch.device:
    """``name`` as a device this machine has, or :class:`UsageError` saying which devices it has."""
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise UsageError(f"--device {name!r} is not a device name; use cpu, cuda or cuda:N") from err
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    available = ["cpu"] + [f"cuda:{i}" for i in range(count)]
    if device.type == "cuda" and (count == 0 or (device.index or 0) >= count):
        why = "torch was built without CUDA" if torch.version.cuda is None else "no CUDA GPU is visible"
        raise UsageError(f"--device {name}: not available here ({why}); available: {', '.join(available)}")
    if device.type not in ("cpu", "cuda"):
        raise UsageError(f"--device {name}: unsupported device type; available: {', '.join(available)}")
    return device


def parse_resolution(text: str) -> tuple[int, int]:
    """``"512"`` or ``"WIDTHxHEIGHT"`` as ``(height, width)``."""
    parts = text.lower().split("x")
    if len(parts) not in (1, 2) or not all(p.strip().isdigit() and int(p) > 0 for p in parts):
        raise UsageError(f"--resolution {text!r}: expected SIZE or WIDTHxHEIGHT in pixels, e.g. 512 or 512x320")
    width, height = (int(parts[0]), int(parts[-1]))
    return height, width


def read_pab_config(path: Path) -> Any:
    """A ``PABConfig`` from a JSON file: ``{"spatial": {"interval": 2, "window": [100, 800]}, "mlp": {...}}``."""
    from videosys.pab import Broadcast, MLPReuse, PABConfig

    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise UsageError(f"--pab-config {path}: cannot read it as JSON ({err})") from err
    kinds = ("spatial", "temporal", "full", "cross", "mlp")
    if not isinstance(data, dict) or set(data) - set(kinds):
        raise UsageError(f"--pab-config {path}: expected a JSON object with keys among {', '.join(kinds)}")
    try:
        fields = {k: Broadcast(**v) for k, v in data.items() if k != "mlp"}
        mlp = MLPReuse(**data["mlp"]) if "mlp" in data else None
        return PABConfig(**fields, mlp=mlp)
    except (TypeError, ValueError) as err:
        raise UsageError(f"--pab-config {path}: {err}") from err


def _pab(args: argparse.Namespace, spec: ModelSpec) -> Any:
    if not (args.pab or args.pab_config):
        return None
    try:
        import videosys.pab  # noqa: F401
    except ImportError as err:
        raise UsageError("--pab needs videosys-pab: pip install videosys-pab") from err
    if args.pab_config:
        return read_pab_config(args.pab_config)
    if spec.pab is None:
        raise UsageError(f"{spec.name} has no published PAB defaults; give your settings with --pab-config FILE")
    return spec.pab


def _check_out(out: Path, video: bool, name: str) -> None:
    suffixes = VIDEO_SUFFIXES + (() if video else IMAGE_SUFFIXES)
    if out.suffix.lower() not in suffixes:
        raise UsageError(f"--out {out}: {name} writes {', '.join(suffixes)} files")
    if out.is_dir():
        raise UsageError(f"--out {out} is a folder; give a file name such as {out / ('video' + suffixes[0])}")
    parent = out.absolute().parent
    while not parent.exists():
        parent = parent.parent
    try:  # a real probe: permission bits say nothing about /proc or read-only mounts (and root passes them all)
        with tempfile.TemporaryFile(dir=parent):
            pass
    except OSError as err:
        raise UsageError(f"--out {out}: cannot write in {parent} ({err.strerror or err})") from err


def _condition(args: argparse.Namespace, spec: ModelSpec) -> str | int:
    if spec.task == "text-to-video":
        if args.class_label is not None:
            raise UsageError(f"--class is for class-conditional models; {spec.name} takes --prompt")
        if not args.prompt or not args.prompt.strip():
            raise UsageError(f"{spec.name} needs --prompt TEXT")
        return args.prompt
    if args.prompt is not None:
        raise UsageError(f"{spec.name} is class-conditional: use --class NAME_OR_ID, not --prompt")
    if args.class_label is None or not args.class_label.strip():
        raise UsageError(f"{spec.name} needs --class NAME_OR_ID (an ImageNet class name or an index 0..999)")
    label = args.class_label.strip()
    return int(label) if label.isdigit() else label


MODEL_OPTIONS = {
    "aspect-ratio": "aspect_ratio",
    "duration": "duration",
    "image": "image",
    "video": "video",
    "keep-frames": "keep_frames",
}
"""Options only some models take (:attr:`ModelSpec.options`), with their ``argparse`` attribute names."""


def _check_model_options(args: argparse.Namespace, spec: ModelSpec) -> None:
    for option, attribute in MODEL_OPTIONS.items():
        if getattr(args, attribute) is not None and option not in spec.options:
            takers = [name for name, other in sorted(MODELS.items()) if option in other.options] or ["none"]
            raise UsageError(f"--{option} does not apply to {spec.name}; models that take it: {', '.join(takers)}")


def _resolution(text: str, spec: ModelSpec) -> dict[str, Any]:
    """Call arguments of ``--resolution``: a named one (``480p``) where the model has them, else pixels."""
    if "resolution" not in spec.defaults:
        named = spec.pipeline_class().RESOLUTIONS
        if text in named:
            height, width = named[text]
            return {"height": height, "width": width}
        try:
            height, width = parse_resolution(text)
        except UsageError:
            if not named:
                raise
            raise UsageError(
                f"--resolution {text!r}: expected one of {', '.join(named)} or SIZE or WIDTHxHEIGHT in pixels"
            ) from None
        return {"height": height, "width": width}
    from .opensora_presets import RESOLUTIONS

    if text in RESOLUTIONS:
        return {"resolution": text}
    try:
        height, width = parse_resolution(text)
    except UsageError:
        raise UsageError(
            f"--resolution {text!r}: expected one of {', '.join(RESOLUTIONS)} or SIZE or WIDTHxHEIGHT in pixels"
        ) from None
    return {"height": height, "width": width}


def read_image(path: Path) -> np.ndarray:
    """An image file as uint8 ``(H, W, 3)`` (grey and RGBA converted), or :class:`UsageError` naming it."""
    import imageio.v3 as iio

    try:
        image = np.asarray(iio.imread(path))
    except Exception as err:  # imageio raises many types for unreadable files
        raise UsageError(f"--image {path}: cannot read it as an image ({err})") from err
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=-1)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] not in (3, 4):
        raise UsageError(f"--image {path}: expected an 8-bit RGB, RGBA or grey image, got {image.dtype} {image.shape}")
    return image[..., :3]


def read_clip(path: Path) -> np.ndarray:
    """A video file as uint8 ``(T, H, W, 3)``, or :class:`UsageError` naming it."""
    from videosys.core.io import load_video

    try:
        return load_video(path)
    except Exception as err:  # missing file, unknown container, no ffmpeg plugin
        raise UsageError(f"--video {path}: cannot read it as a video ({err})") from err


def _reference(args: argparse.Namespace) -> dict[str, Any]:
    """Call arguments of ``--image`` / ``--video`` / ``--keep-frames``, files read (and so checked) here."""
    if args.image is not None and args.video is not None:
        raise UsageError("--image and --video exclude each other: animate an image or continue a clip")
    if args.keep_frames is not None and (args.video is None or args.keep_frames < 1):
        raise UsageError(f"--keep-frames {args.keep_frames}: expected a count >= 1 of latent frames, with --video")
    if args.image is not None:
        return {"image": read_image(args.image)}
    if args.video is not None:
        return {"video": read_clip(args.video), "keep_frames": args.keep_frames}
    return {}


def _call(args: argparse.Namespace, spec: ModelSpec) -> dict[str, Any]:
    call = dict(spec.defaults)
    if args.steps is not None:
        if args.steps < 1:
            raise UsageError(f"--steps {args.steps}: expected at least 1 denoising step")
        call["num_inference_steps"] = args.steps
    if args.cfg is not None:
        if args.cfg < 0:
            raise UsageError(f"--cfg {args.cfg}: expected a guidance scale >= 0 (1 or less turns guidance off)")
        call["guidance_scale"] = args.cfg
    _check_model_options(args, spec)
    if spec.task == "text-to-video":
        if args.frames is not None:
            if args.frames < 1:
                raise UsageError(f"--frames {args.frames}: expected at least 1 frame")
            if args.duration is not None:
                raise UsageError("--frames and --duration exclude each other: give the length once")
            call["num_frames"] = args.frames
        if args.resolution is not None:
            call.update(_resolution(args.resolution, spec))
        if args.aspect_ratio is not None:
            if "height" in call and "resolution" in spec.defaults:
                raise UsageError("--aspect-ratio goes with a named --resolution (480p), not with pixel sizes")
            call["aspect_ratio"] = args.aspect_ratio
        if args.duration is not None:
            call["duration"] = args.duration
        call.update(_reference(args))
    elif args.frames is not None or args.resolution is not None:
        raise UsageError(f"--frames/--resolution do not apply to {spec.name}: its image size is its checkpoint's")
    try:
        spec.pipeline_class().check_call(call)
    except ValueError as err:
        raise UsageError(str(err)) from err
    call["seed"] = args.seed
    return call


def _load_options(call: dict[str, Any], spec: ModelSpec) -> dict[str, Any]:
    try:
        return spec.pipeline_class().load_options(call)
    except ValueError as err:
        raise UsageError(str(err)) from err


def validate(args: argparse.Namespace) -> Request:
    """Check every option of ``videosys generate`` and the weights folder's layout; load nothing."""
    spec = get_model(args.model or DEFAULT_MODEL)
    condition = _condition(args, spec)
    call = _call(args, spec)
    device = check_device(args.device)
    dtype = DTYPES[args.dtype] if args.dtype else None
    if dtype is torch.float16 and device.type == "cpu":
        raise UsageError("--dtype fp16 needs a CUDA device; on cpu use fp32 or bf16")
    _check_out(args.out, spec.task == "text-to-video", spec.name)
    if args.weights is None and not spec.bundled:
        raise UsageError(
            f"{spec.name} needs --weights DIR, a folder laid out like {spec.pipeline_class().OFFICIAL}: "
            f"{spec.pipeline_class().layout()}"
        )
    options = _load_options(call, spec)
    pipeline = spec.pipeline_class()
    weights = None if args.weights is None else pipeline.check_folder(args.weights, pipeline.components_for(options))
    if args.dsp:
        if "WORLD_SIZE" not in os.environ:
            raise UsageError("--dsp shards over ranks: run under torchrun --nproc_per_node N -m videosys.models ...")
        try:
            import videosys.dsp  # noqa: F401
        except ImportError as err:
            raise UsageError("--dsp needs videosys-dsp: pip install videosys-dsp") from err
    pab = _pab(args, spec)
    return Request(spec, weights, condition, call, options, device, dtype, args.out, pab, args.dsp, args.allow_bin)
