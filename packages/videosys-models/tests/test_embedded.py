"""The embedded default model (``videosys-tiny``): its shipped weights load, and its clips follow the prompt.

Prompt following is measured from the generated pixels by ``pixel_measure`` (a measurement that knows
nothing of the model): the dominant colour, the direction the shape's centroid moves and, for large
shapes, the fill of its bounding box. Half the prompts are combinations held out of training; the
shipped file's metadata says which.
"""

import json

import numpy as np
import pytest
import torch
from pixel_measure import measure
from safetensors import safe_open

from videosys.models import load
from videosys.models.embedded import (
    EMBEDDED_SIZES,
    WEIGHTS,
    EmbeddedPipeline,
    UnknownWordError,
    build_backbone,
    write_weights,
)

SEEN = [
    "a red circle moving right",
    "a large green triangle moving left",
    "a large blue square moving up",
    "a small yellow circle moving down slowly",
    "a white triangle moving right quickly",
]
HELD_OUT = [
    "a large red triangle moving left",
    "a green square moving up",
    "a large blue circle moving down",
    "a yellow triangle moving right quickly",
    "a white circle moving up",
]


@pytest.fixture(scope="module")
def pipeline():
    return load("videosys-tiny")


@pytest.fixture(scope="module")
def shipped():
    with safe_open(str(WEIGHTS), framework="pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, json.loads(f.metadata()["config"])


def test_shipped_weights_load_with_no_path(pipeline, shipped):
    tensors, config = shipped
    assert sum(t.numel() * t.element_size() for t in tensors.values()) < 5e6  # a few MB at most
    state = pipeline.transformer.state_dict()
    assert {f"transformer.{k}" for k in state} | {"text_encoder.table"} == set(tensors)
    for key, value in state.items():
        assert torch.equal(value, tensors[f"transformer.{key}"]), key
    assert pipeline.transformer.sample_size == config["transformer"]["sample_size"] == 24


def _named(prompt: str) -> tuple[str, str, str]:
    """(colour, shape, direction) of a prompt of the shapes grammar."""
    filler = ("a", "moving", "small", "large", "slowly", "quickly")
    color, shape, direction = (w for w in prompt.split() if w not in filler)
    return color, shape, direction


def test_held_out_prompts_were_held_out(shipped):
    held_out = {tuple(c.split()) for c in shipped[1]["held_out"]}
    assert {_named(p) for p in HELD_OUT} <= held_out
    assert not {_named(p) for p in SEEN} & held_out


@pytest.mark.xfail(
    strict=True,
    reason="the shipped weights are undertrained (see docs/default_model.rst): their clips are dark speckle "
    "without a shape; strict, so this fails once retrained weights follow the prompts and the mark must go",
)
@pytest.mark.parametrize("prompts", [SEEN, HELD_OUT], ids=["seen", "held-out"])
def test_clips_follow_the_prompt_measured_from_pixels(pipeline, prompts):
    videos = pipeline(prompts, seed=0)
    for prompt, video in zip(prompts, videos):
        assert video.dtype == np.uint8 and video.shape == (8, 24, 24, 3)
        color, shape, direction = _named(prompt)
        got = measure(video)
        assert (got.color, got.direction) == (color, direction), prompt
        if "large" in prompt.split():
            assert got.shape == shape, (prompt, got.fill)


def test_a_seed_gives_one_video_and_other_seeds_others(pipeline):
    prompt = "a blue triangle moving left"
    first, again, other = pipeline(prompt, seed=3)[0], pipeline(prompt, seed=3)[0], pipeline(prompt, seed=4)[0]
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)


def test_bad_prompts_and_options_name_the_problem(pipeline):
    with pytest.raises(UnknownWordError, match=r"unknown word\(s\) \['hexagon'\].*knows: a, moving"):
        pipeline("a red hexagon moving left")
    with pytest.raises(UnknownWordError, match="0 words"):
        pipeline("  ")
    with pytest.raises(ValueError, match="num_frames must be 1..8 .* got 0"):
        pipeline("a red circle moving left", num_frames=0)
    with pytest.raises(ValueError, match="guidance_scale must be 1.0, got 7.5"):
        pipeline("a red circle moving left", guidance_scale=7.5)


def test_missing_or_foreign_weights_files_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="no embedded-model weights at .*nope.safetensors"):
        EmbeddedPipeline.from_pretrained(tmp_path / "nope.safetensors")
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(1)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(ValueError, match="has no 'config' metadata: not written by write_weights"):
        EmbeddedPipeline.from_pretrained(tmp_path / "other.safetensors")


def test_models_without_shipped_weights_need_a_path():
    with pytest.raises(ValueError, match="model latte needs the path .* need none: videosys-tiny"):
        load("latte")


def test_written_weights_load_into_an_equal_pipeline(tmp_path):
    torch.manual_seed(0)
    backbone = build_backbone(num_layers=1)
    table = torch.randn(3, 32)
    config = {
        "transformer": {**EMBEDDED_SIZES, "num_layers": 1},
        "vocabulary": ["a", "red", "dot"],
        "max_words": 4,
        "scheduler": {"num_train_timesteps": 1000, "beta_schedule": "linear", "timestep_spacing": "trailing"},
    }
    loaded = EmbeddedPipeline.from_pretrained(write_weights(tmp_path / "w.safetensors", backbone, table, config))
    for key, value in backbone.state_dict().items():
        assert torch.equal(loaded.transformer.state_dict()[key], value), key
    text, mask = loaded.text_encoder.encode(["a red dot", "Red"])
    assert torch.equal(text[0, :3], table) and torch.equal(text[1, 0], table[1])
    assert mask.tolist() == [[True, True, True, False], [True, False, False, False]]
    assert loaded("a dot", seed=0, num_inference_steps=2, num_frames=3)[0].shape == (3, 24, 24, 3)


@pytest.mark.parametrize(
    ("rgb", "color", "shape", "step", "direction"),
    [
        ((210, 50, 40), "red", "square", (0, 2), "right"),
        ((60, 190, 70), "green", "circle", (-1, 0), "up"),
        ((240, 230, 60), "yellow", "triangle", (0, -1), "left"),
        ((225, 225, 225), "white", "circle", (2, 0), "down"),
    ],
)
def test_pixel_measure_reads_drawn_clips(rgb, color, shape, step, direction):
    """The measurement itself, on clips drawn here: a 9-pixel shape on a dark background, moving ``step`` a frame."""
    ys, xs = np.mgrid[-4:5, -4:5]
    masks = {"square": np.ones((9, 9), bool), "circle": ys**2 + xs**2 <= 4.5**2, "triangle": np.abs(xs) <= (ys + 4) / 2}
    video = np.full((8, 40, 40, 3), 12, dtype=np.uint8)
    for t in range(8):
        top, left = 15 + step[0] * t, 15 + step[1] * t
        video[t, top : top + 9, left : left + 9][masks[shape]] = rgb
    got = measure(video)
    assert (got.color, got.shape, got.direction) == (color, shape, direction)
