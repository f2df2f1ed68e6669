"""A synthetic captioned video set: coloured shapes moving over a plain dark background.

Captions follow one small grammar, ``a [small|large] <colour> <shape> moving <direction> [slowly|quickly]``,
the prompts of videosys-models' embedded default model, which is trained on this set. Size and speed
words are each left out of half the captions, so prompts without them are in the training distribution.
Some (colour, shape, direction) combinations can be held out, to check that a model composes the words.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np

from videosys.core.io import save_video

__all__ = [
    "BACKGROUND",
    "COLORS",
    "DIRECTIONS",
    "SHAPES",
    "SIZES",
    "SPEEDS",
    "VOCABULARY",
    "ShapeMotion",
    "make_shapes_dataset",
    "parse_combination",
    "render_clip",
]

BACKGROUND = 16
"""The grey level of every background pixel."""
COLORS = {
    "red": (230, 40, 40),
    "green": (40, 200, 60),
    "blue": (50, 80, 230),
    "yellow": (240, 220, 40),
    "white": (235, 235, 235),
}
SHAPES = ("square", "circle", "triangle")
DIRECTIONS = {"right": (0, 1), "left": (0, -1), "down": (1, 0), "up": (-1, 0)}
SIZES = {"small": 10, "large": 6}
"""The shape's radius is the frame size divided by this (at least 2 pixels)."""
SPEEDS = {"slowly": 1, "quickly": 2}
"""Multiples of the base speed, about a quarter of the frame over the clip (at least 1 pixel per frame)."""
VOCABULARY = ("a", "moving", *SIZES, *COLORS, *SHAPES, *DIRECTIONS, *SPEEDS)
"""Every word a caption can hold."""

_CHOICES = {"color": tuple(COLORS), "shape": SHAPES, "direction": tuple(DIRECTIONS), "size": tuple(SIZES)}


@dataclass(frozen=True)
class ShapeMotion:
    """What one clip shows: which shape, in which colour, moving which way, how big and how fast."""

    color: str
    shape: str
    direction: str
    size: str = "large"
    speed: str = "slowly"

    def __post_init__(self) -> None:
        for name, options in (*_CHOICES.items(), ("speed", tuple(SPEEDS))):
            if getattr(self, name) not in options:
                raise ValueError(f"unknown {name} {getattr(self, name)!r}; expected one of {', '.join(options)}")

    def caption(self, *, say_size: bool = True, say_speed: bool = True) -> str:
        """``"a small red circle moving left quickly"``, optionally without the size or speed word."""
        words = ("a", self.size if say_size else "", self.color, self.shape, "moving", self.direction)
        return " ".join(w for w in (*words, self.speed if say_speed else "") if w)

    def radius(self, frame_size: int) -> int:
        return max(2, round(frame_size / SIZES[self.size]))

    def pixels_per_frame(self, frames: int, frame_size: int) -> int:
        return SPEEDS[self.speed] * max(1, round(frame_size / 4 / max(1, frames - 1)))


def parse_combination(text: str) -> tuple[str, str, str]:
    """``"green triangle up"`` to ``("green", "triangle", "up")``, checking every word."""
    words = text.split()
    if len(words) != 3:
        raise ValueError(f"a held-out combination is 'colour shape direction', got {text!r}")
    motion = ShapeMotion(*words)
    return motion.color, motion.shape, motion.direction


def _mask(shape: str, size: int, radius: int) -> np.ndarray:
    """The shape centred in a ``size x size`` frame."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) - (size - 1) / 2
    if shape == "square":
        return (np.abs(y) <= radius) & (np.abs(x) <= radius)
    if shape == "circle":
        return y**2 + x**2 <= radius**2
    return (np.abs(y) <= radius) & (np.abs(x) <= (y + radius) / 2)  # a triangle, apex up


def _start_range(occupied: np.ndarray, step: int, travel: int, size: int) -> tuple[int, int]:
    """Shifts along one axis that keep the shape whole in the frame for the whole path (any shift if none does)."""
    lo, hi = -int(occupied[0]), size - 1 - int(occupied[-1])
    lo, hi = (lo, hi - travel) if step > 0 else (lo + travel, hi) if step < 0 else (lo, hi)
    return (lo, hi) if lo <= hi else (-(size // 2), size - size // 2 - 1)


def render_clip(motion: ShapeMotion, frames: int, size: int, start: tuple[int, int]) -> np.ndarray:
    """uint8 ``(frames, size, size, 3)``: the shape shifted by ``start`` from the centre, then moving.

    It moves a whole number of pixels (at least one) per frame, so no two consecutive frames are equal
    (GIF writers merge those), wrapping around the border if the path leaves the frame.
    """
    dy, dx = DIRECTIONS[motion.direction]
    speed = motion.pixels_per_frame(frames, size)
    mask = _mask(motion.shape, size, motion.radius(size))
    video = np.full((frames, size, size, 3), BACKGROUND, dtype=np.uint8)
    for t in range(frames):
        shift = (start[0] + dy * speed * t, start[1] + dx * speed * t)
        video[t][np.roll(mask, shift, axis=(0, 1))] = COLORS[motion.color]
    return video


def _random_start(
    motion: ShapeMotion, frames: int, size: int, rng: np.random.Generator, jitter: int | None = None
) -> tuple[int, int]:
    """A start from which the whole path stays inside the frame, when the frame is large enough for that.

    ``jitter=None``: any such start. An integer: the path centred in the frame, then shifted by up to
    ``jitter`` pixels along each axis (kept inside the same range).
    """
    mask = _mask(motion.shape, size, motion.radius(size))
    travel = motion.pixels_per_frame(frames, size) * (frames - 1)
    start = []
    for axis, step in enumerate(DIRECTIONS[motion.direction]):
        occupied = np.flatnonzero(mask.any(axis=1 - axis))
        lo, hi = _start_range(occupied, step, travel, size)
        if jitter is not None:
            centred = -step * travel // 2
            lo, hi = max(lo, centred - jitter), min(hi, centred + jitter)
        start.append(int(rng.integers(lo, hi + 1)))
    return start[0], start[1]


def make_shapes_dataset(
    out_dir: str | os.PathLike,
    num_videos: int = 32,
    frames: int = 16,
    size: int = 32,
    seed: int = 0,
    held_out: Iterable[str] = (),
    jitter: int | None = None,
) -> Path:
    """Write ``num_videos`` GIF clips and ``data.csv`` to ``out_dir``; return the CSV path.

    Each row has ``path`` and ``caption`` (what training reads) and the clip's ``color``, ``shape``,
    ``direction``, ``size`` and ``speed``. No clip shows a ``held_out`` combination ("green triangle up").
    ``jitter``: see :func:`_random_start` (None: the start anywhere the path fits; an integer: the path
    centred, give or take that many pixels, so where the shape is says little and the caption all).
    """
    excluded = {parse_combination(text) for text in held_out}
    combos = [(c, s, d) for c in COLORS for s in SHAPES for d in DIRECTIONS if (c, s, d) not in excluded]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(num_videos):
        color, shape, direction = combos[rng.integers(len(combos))]
        motion = ShapeMotion(color, shape, direction, str(rng.choice(list(SIZES))), str(rng.choice(list(SPEEDS))))
        say_size, say_speed = (bool(b) for b in rng.integers(2, size=2))
        name = f"clip_{i:04d}.gif"
        clip = render_clip(motion, frames, size, _random_start(motion, frames, size, rng, jitter))
        save_video(clip, out / name, fps=8)
        rows.append({"path": name, "caption": motion.caption(say_size=say_size, say_speed=say_speed), **asdict(motion)})
    csv_path = out / "data.csv"
    tmp = csv_path.with_suffix(".csv.tmp")
    columns = ["path", "caption", *(column.name for column in fields(ShapeMotion))]
    with tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    tmp.replace(csv_path)  # the CSV appears only once every clip is written
    return csv_path
