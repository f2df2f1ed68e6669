"""Video files in and out: uint8 ``(T, H, W, 3)`` frames, mp4 (H.264) and gif.

imageio and its bundled ffmpeg are imported on first use; install them with
``pip install 'videosys-core[io]'``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = ["load_video", "save_video", "to_uint8_frames"]

_FORMATS = (".mp4", ".gif")
# GIF stores frame durations in centiseconds and Pillow merges identical consecutive frames into one
# longer frame. save_video records its per-frame duration in the file's comment so load_video can
# expand merged frames back exactly.
_GIF_COMMENT = "videosys frame duration ms="


def _imageio() -> Any:
    try:
        import imageio.v3 as iio
    except ImportError as err:  # pragma: no cover - exercised only without the extra
        raise ImportError("video I/O needs imageio: pip install 'videosys-core[io]'") from err
    return iio


def _check_frames(frames: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(frames, torch.Tensor):
        frames = frames.detach().cpu().numpy()
    if not isinstance(frames, np.ndarray):
        raise TypeError(f"frames must be a numpy array or torch tensor, got {type(frames).__name__}")
    if frames.dtype != np.uint8:
        raise TypeError(f"frames must be uint8 (0..255), got dtype {frames.dtype}; see to_uint8_frames()")
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] < 1:
        raise ValueError(f"frames must be (T, H, W, 3) RGB with T >= 1, got shape {frames.shape}")
    return frames


def _suffix(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in _FORMATS:
        raise ValueError(f"unsupported video format {suffix or '(none)'!r} for {path}; expected one of {_FORMATS}")
    return suffix


def to_uint8_frames(video: torch.Tensor, value_range: tuple[float, float] = (-1.0, 1.0)) -> np.ndarray:
    """A decoded ``(C, T, H, W)`` video with values in ``value_range`` as uint8 ``(T, H, W, C)`` frames."""
    if video.dim() != 4:
        raise ValueError(f"expected a (C, T, H, W) video, got shape {tuple(video.shape)}")
    low, high = value_range
    scaled = (video.detach().float().clamp(low, high) - low) / (high - low) * 255.0
    return scaled.round().to(torch.uint8).permute(1, 2, 3, 0).cpu().numpy()


def save_video(frames: np.ndarray | torch.Tensor, path: str | os.PathLike, fps: float = 8.0) -> Path:
    """Write uint8 ``(T, H, W, 3)`` frames to ``path`` (``.mp4`` as H.264/yuv420p, or ``.gif``)."""
    frames = _check_frames(frames)
    path = Path(path)
    suffix = _suffix(path)
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    _check_writable(path)
    iio = _imageio()
    if suffix == ".mp4":
        height, width = frames.shape[1:3]
        if height % 2 or width % 2:
            raise ValueError(f"H.264 (yuv420p) needs even frame sizes, got {height}x{width}; save as .gif instead")
        iio.imwrite(
            path,
            frames,
            plugin="FFMPEG",
            fps=fps,
            codec="libx264",
            macro_block_size=1,
            pixelformat="yuv420p",
            output_params=["-crf", "18"],
        )
        if not path.is_file() or path.stat().st_size == 0:  # ffmpeg reports its failures on stderr and exits 0
            path.unlink(missing_ok=True)
            raise OSError(f"ffmpeg wrote nothing to {path}")
    else:
        frame_ms = 10 * max(2, round(100 / fps))  # a whole number of centiseconds, as GIF stores it
        comment = f"{_GIF_COMMENT}{frame_ms}"
        data = iio.imwrite(
            "<bytes>", frames, extension=".gif", plugin="pillow", duration=frame_ms, loop=0, comment=comment
        )
        path.write_bytes(data)  # encoded in memory: a failed write raises here, not in a writer's finaliser
    return path


def _check_writable(path: Path) -> None:
    """Create ``path`` (and its folder) now, so an unwritable destination fails before any encoding."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.open("wb").close()
    except OSError as err:
        raise OSError(f"cannot write {path}: {err.strerror or err}") from err


def load_video(path: str | os.PathLike, frame_indices: Sequence[int] | None = None) -> np.ndarray:
    """Read a video as uint8 ``(T, H, W, 3)`` frames; ``frame_indices`` keeps only those frames, in that order."""
    path = Path(path)
    suffix = _suffix(path)
    if not path.is_file():
        raise FileNotFoundError(f"no video file at {path}")
    if suffix == ".gif":
        frames = _read_gif(path)
    else:
        frames = np.stack([np.asarray(f)[..., :3] for f in _imageio().imiter(path, plugin="FFMPEG")])
    if frame_indices is None:
        return frames
    bad = [i for i in frame_indices if not 0 <= i < len(frames)]
    if bad:
        raise IndexError(f"frame indices {bad} are outside the {len(frames)} frames of {path}")
    return frames[list(frame_indices)]


def _read_gif(path: Path) -> np.ndarray:
    """GIF frames as RGB; frames Pillow merged on writing are repeated back (files written by save_video)."""
    from PIL import Image, ImageSequence

    with Image.open(path) as gif:
        comment = gif.info.get("comment", b"").decode("ascii", "replace")
        frame_ms = int(comment.removeprefix(_GIF_COMMENT)) if comment.startswith(_GIF_COMMENT) else None
        frames = []
        for frame in ImageSequence.Iterator(gif):
            repeats = max(1, round(frame.info.get("duration", 0) / frame_ms)) if frame_ms else 1
            frames.extend([np.asarray(frame.convert("RGB"))] * repeats)
    return np.stack(frames)
