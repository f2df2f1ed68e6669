"""Open-Sora 1.2's named sizes and durations: the published anchors, and the table's own consistency."""

from __future__ import annotations

import pytest

from videosys.models.opensora_presets import (
    ASPECT_RATIOS,
    RESOLUTIONS,
    conditioning_fps,
    image_size,
    num_frames,
    with_aesthetic_score,
)

NOMINAL_PIXELS = {"144p": 192 * 192, "240p": 240 * 426, "360p": 360 * 640, "480p": 480 * 854, "720p": 720 * 1280}
"""Each resolution's area in Open-Sora's table header (its 16:9 size; 144p is 192x192)."""


def test_published_anchors():
    assert image_size("480p", "9:16") == (480, 854)  # REFERENCES: 480p 9:16 = 480x854
    assert image_size("720p", "9:16") == (720, 1280)
    assert image_size("240p", "16:9") == (426, 240)  # height:width, so 16:9 is portrait
    assert image_size("144p", "1:1") == (192, 192)
    assert num_frames("2s") == 51 and num_frames("4s") == 102 and num_frames("16x") == 816


@pytest.mark.parametrize("resolution", list(NOMINAL_PIXELS))
def test_every_size_has_its_ratio_and_about_the_nominal_area(resolution):
    assert list(RESOLUTIONS[resolution]) == list(ASPECT_RATIOS)
    for ratio, (height, width) in RESOLUTIONS[resolution].items():
        h, w = (int(v) for v in ratio.split(":"))
        expected = 2.08 if ratio == "50:27" else h / w  # Open-Sora's name for its 2.08 sizes
        assert height / width == pytest.approx(expected, rel=0.02), (resolution, ratio)
        assert height * width == pytest.approx(NOMINAL_PIXELS[resolution], rel=0.02), (resolution, ratio)


def test_frame_counts_and_fps():
    assert num_frames(17) == 17 and num_frames("68") == 68
    assert conditioning_fps(51) == 24 and conditioning_fps(51, fps=30) == 30 and conditioning_fps(1) == 120


def test_aesthetic_score_suffix():
    assert with_aesthetic_score("a cat") == "a cat aesthetic score: 6.5."
    assert with_aesthetic_score("a cat", 7) == "a cat aesthetic score: 7.0."
    assert with_aesthetic_score("a cat aesthetic score: 5.0.") == "a cat aesthetic score: 5.0."
    assert with_aesthetic_score("a cat", None) == "a cat"


def test_unknown_names_list_the_valid_ones():
    with pytest.raises(ValueError, match=r"unknown resolution '1080p'; expected one of 144p, 240p, 360p, 480p, 720p"):
        image_size("1080p", "9:16")
    with pytest.raises(ValueError, match=r"unknown aspect ratio '16:10' \(height:width\); expected one of 3:8, "):
        image_size("480p", "16:10")
    with pytest.raises(ValueError, match=r"unknown duration '3s'; expected a frame count or one of 2s, 4s"):
        num_frames("3s")
    with pytest.raises(ValueError, match="at least 1 frame, got 0"):
        num_frames(0)
