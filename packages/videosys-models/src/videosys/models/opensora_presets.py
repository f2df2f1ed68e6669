"""Open-Sora 1.2's named video sizes, durations and prompt convention, as its inference configs use them.

Sizes are looked up as ``(resolution, aspect ratio)``: ``image_size("480p", "9:16") == (480, 854)``.
Open-Sora writes ratios as **height:width**, so ``"9:16"`` is the usual landscape 854x480 video and
``"16:9"`` portrait. The tables are Open-Sora 1.2's (``opensora/datasets/aspect.py`` at v1.2.0), which
were tuned by hand and are not reproduced by any formula (some widths are odd, e.g. 480p 12:25 = 444x925).
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "ASPECT_RATIOS",
    "DURATIONS",
    "IMAGE_FPS",
    "RESOLUTIONS",
    "VIDEO_FPS",
    "conditioning_fps",
    "image_size",
    "num_frames",
    "with_aesthetic_score",
]

ASPECT_RATIOS: Final[tuple[str, ...]] = (
    "3:8", "9:21", "12:25", "1:2", "9:17", "27:50", "9:16", "5:8", "2:3",
    "3:4", "1:1", "4:3", "3:2", "16:9", "17:9", "2:1", "50:27",
)  # fmt: skip
"""Named height:width ratios, from the widest (3:8) to the tallest. Open-Sora's ``"50:27"`` is its name for
the 2.08 (about 25:12) sizes, not 1.85; kept so its configs mean the same here."""

_SIZES: Final[dict[str, str]] = {  # HxW for each of ASPECT_RATIOS, in order
    "144p": "117x312 125x291 133x277 135x270 139x262 141x260 144x256 151x241 156x234 166x221 192x192 221x165 "
    "235x156 256x144 263x139 271x135 277x132",
    "240p": "196x522 210x490 222x462 226x452 232x438 236x436 240x426 252x404 262x393 276x368 320x320 370x278 "
    "392x262 426x240 440x232 452x226 462x222",
    "360p": "294x784 314x732 332x692 340x680 350x662 352x652 360x640 380x608 392x588 416x554 480x480 554x416 "
    "588x392 640x360 660x350 678x340 692x332",
    "480p": "392x1046 420x980 444x925 452x904 466x880 470x870 480x854 506x810 522x784 554x738 640x640 740x555 "
    "784x522 854x480 880x466 906x454 924x444",
    "720p": "588x1568 628x1466 666x1388 678x1356 698x1318 706x1306 720x1280 758x1212 784x1176 832x1110 960x960 "
    "1108x832 1176x784 1280x720 1320x698 1358x680 1386x666",
}

RESOLUTIONS: Final[dict[str, dict[str, tuple[int, int]]]] = {
    name: {
        ratio: (int(size.split("x")[0]), int(size.split("x")[1]))
        for ratio, size in zip(ASPECT_RATIOS, sizes.split(), strict=True)
    }
    for name, sizes in _SIZES.items()
}
"""``RESOLUTIONS[resolution][aspect_ratio] == (height, width)`` in pixels."""

DURATIONS: Final[dict[str, int]] = {
    "2s": 51, "4s": 102, "8s": 204, "16s": 408, "32s": 816,
    "1x": 51, "2x": 102, "4x": 204, "8x": 408, "16x": 816,
}  # fmt: skip
"""Named video lengths in frames at 24 fps (``"2s"`` = 51 frames = three VAE micro-clips of 17)."""

VIDEO_FPS: Final = 24
"""Frame rate of Open-Sora 1.2's videos, and the fps the model is conditioned on for them."""
IMAGE_FPS: Final = 120
"""The fps the model is conditioned on when generating a single image (as it was trained)."""


def image_size(resolution: str, aspect_ratio: str) -> tuple[int, int]:
    """``(height, width)`` in pixels of a named resolution (``"144p"`` .. ``"720p"``) and height:width ratio."""
    if resolution not in RESOLUTIONS:
        raise ValueError(f"unknown resolution {resolution!r}; expected one of {', '.join(RESOLUTIONS)}")
    sizes = RESOLUTIONS[resolution]
    if aspect_ratio not in sizes:
        raise ValueError(f"unknown aspect ratio {aspect_ratio!r} (height:width); expected one of {', '.join(sizes)}")
    return sizes[aspect_ratio]


def num_frames(duration: str | int) -> int:
    """Frames of a named duration (``"2s"`` -> 51, ``"4x"`` -> 102) or of a frame count given as a number."""
    if isinstance(duration, str) and duration in DURATIONS:
        return DURATIONS[duration]
    try:
        frames = int(duration)
    except (TypeError, ValueError):
        raise ValueError(
            f"unknown duration {duration!r}; expected a frame count or one of {', '.join(DURATIONS)}"
        ) from None
    if frames < 1:
        raise ValueError(f"a video needs at least 1 frame, got {duration!r}")
    return frames


def conditioning_fps(frames: int, fps: int = VIDEO_FPS) -> int:
    """The fps the model is told: ``fps`` for videos, :data:`IMAGE_FPS` for a single frame."""
    return fps if frames > 1 else IMAGE_FPS


def with_aesthetic_score(prompt: str, score: float | None = 6.5) -> str:
    """``prompt`` + ``" aesthetic score: 6.5."`` as Open-Sora 1.2 samples (unchanged if it already has one)."""
    if score is None or "aesthetic score:" in prompt:
        return prompt
    return f"{prompt} aesthetic score: {score:.1f}."
