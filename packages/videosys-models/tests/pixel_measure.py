"""What a generated clip shows, measured from its pixels alone (no knowledge of the model or its training data).

Background: each clip's most common colour. Foreground: pixels far from it. Colour: the majority vote of
foreground pixels over five nominal colours (pure red, green, blue, yellow, white). Direction: the sign
and axis of the foreground centroid's mean displacement per frame. Shape: how much of its bounding box
the foreground fills (square 1, circle about pi/4, apex-up triangle about 1/2).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NOMINAL = {
    "red": (255, 0, 0),
    "green": (0, 255, 0),
    "blue": (0, 0, 255),
    "yellow": (255, 255, 0),
    "white": (255, 255, 255),
}
FOREGROUND_DISTANCE = 100.0
"""Euclidean RGB distance from the background beyond which a pixel belongs to the shape."""


@dataclass(frozen=True)
class Measured:
    color: str
    direction: str | None
    """None when the centroid does not move by at least half a pixel per frame."""
    fill: float
    """Median over frames of foreground pixels / bounding-box pixels."""

    @property
    def shape(self) -> str:
        return "square" if self.fill > 0.9 else "circle" if self.fill > 0.68 else "triangle"


def _background(video: np.ndarray) -> np.ndarray:
    colours, counts = np.unique(video.reshape(-1, 3), axis=0, return_counts=True)
    return colours[counts.argmax()].astype(float)


def measure(video: np.ndarray) -> Measured:
    """Measure a uint8 ``(T, H, W, 3)`` clip; raises if some frame shows no foreground at all."""
    pixels = video.astype(float)
    foreground = np.linalg.norm(pixels - _background(video), axis=-1) > FOREGROUND_DISTANCE
    if not foreground.reshape(len(video), -1).any(axis=1).all():
        raise AssertionError(f"a frame shows no shape (foreground pixels per frame: {foreground.sum((1, 2))})")
    names = list(NOMINAL)
    palette = np.array([NOMINAL[n] for n in names], dtype=float)
    nearest = np.linalg.norm(pixels[foreground][:, None] - palette[None], axis=-1).argmin(axis=1)
    color = names[np.bincount(nearest, minlength=len(names)).argmax()]
    ys, xs = np.mgrid[: video.shape[1], : video.shape[2]]
    centroids = np.array([(ys[f].mean(), xs[f].mean()) for f in foreground])
    dy, dx = np.diff(centroids, axis=0).mean(axis=0)
    direction = None
    if max(abs(dy), abs(dx)) >= 0.5:
        direction = ("down" if dy > 0 else "up") if abs(dy) > abs(dx) else ("right" if dx > 0 else "left")
    fills = []
    for f in foreground:
        rows, cols = np.flatnonzero(f.any(1)), np.flatnonzero(f.any(0))
        fills.append(f.sum() / ((rows[-1] - rows[0] + 1) * (cols[-1] - cols[0] + 1)))
    return Measured(color, direction, float(np.median(fills)))
