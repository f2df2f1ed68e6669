"""A synthetic captioned video set: coloured shapes moving across a dark background."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import torch

from videosys.core.io import save_video

__all__ = ["COLORS", "DIRECTIONS", "SHAPES", "make_shapes_dataset", "render_clip"]

COLORS = {"red": (230, 40, 40), "green": (40, 200, 60), "blue": (50, 80, 230), "yellow": (240, 220, 40)}
SHAPES = ("square", "circle", "triangle")
DIRECTIONS = {"right": (0, 1), "left": (0, -1), "down": (1, 0), "up": (-1, 0)}


def _mask(shape: str, size: int, radius: int) -> np.ndarray:
    """The shape centred in a ``size x size`` frame."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) - (size - 1) / 2
    if shape == "square":
        return (np.abs(y) <= radius) & (np.abs(x) <= radius)
    if shape == "circle":
        return y**2 + x**2 <= radius**2
    return (np.abs(y) <= radius) & (np.abs(x) <= (y + radius) / 2)  # a triangle, apex up


def render_clip(shape: str, color: str, direction: str, frames: int, size: int, start: tuple[int, int]) -> np.ndarray:
    """uint8 ``(frames, size, size, 3)``: the shape moving a whole number of pixels per frame, wrapping around.

    At least one pixel per frame, so no two consecutive frames are equal (GIF writers merge those).
    """
    radius = max(2, size // 6)
    dy, dx = DIRECTIONS[direction]
    speed = max(1, round(size / 2 / max(1, frames - 1)))
    mask = _mask(shape, size, radius)
    video = np.full((frames, size, size, 3), 16, dtype=np.uint8)
    for t in range(frames):
        shift = (start[0] + dy * speed * t, start[1] + dx * speed * t)
        video[t][np.roll(mask, shift, axis=(0, 1))] = COLORS[color]
    return video


def make_shapes_dataset(
    out_dir: str | os.PathLike, num_videos: int = 32, frames: int = 16, size: int = 32, seed: int = 0
) -> Path:
    """Write ``num_videos`` GIF clips and ``data.csv`` (``path,caption``) to ``out_dir``; return the CSV path.

    Captions name the colour, shape and direction ("a red circle moving right"), so a text-conditioned
    model has something to learn from them.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    generator = torch.Generator().manual_seed(seed)
    rows = []
    for i in range(num_videos):
        pick = torch.randint(1 << 30, (4,), generator=generator).tolist()
        color = list(COLORS)[pick[0] % len(COLORS)]
        shape = SHAPES[pick[1] % len(SHAPES)]
        direction = list(DIRECTIONS)[pick[2] % len(DIRECTIONS)]
        start = (pick[3] % size - size // 2, (pick[3] // size) % size - size // 2)
        name = f"clip_{i:04d}.gif"
        save_video(render_clip(shape, color, direction, frames, size, start), out / name, fps=8)
        rows.append({"path": name, "caption": f"a {color} {shape} moving {direction}"})
    csv_path = out / "data.csv"
    tmp = csv_path.with_suffix(".csv.tmp")
    with tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["path", "caption"])
        writer.writeheader()
        writer.writerows(rows)
    tmp.replace(csv_path)  # the CSV appears only once every clip is written
    return csv_path
