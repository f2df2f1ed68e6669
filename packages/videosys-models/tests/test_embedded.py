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


@pytest.mark.parametrize("prompts", [SEEN, HELD_OUT], ids=["seen", "held-out"])
def test_clips_follow_the_prompts_colour_and_direction(pipeline, prompts):
    videos = pipeline(prompts, seed=0)
    for prompt, video in zip(prompts, videos):
        assert video.dtype == np.uint8 and video.shape == (8, 24, 24, 3)
        color, _, direction = _named(prompt)
        got = measure(video)
        assert (got.color, got.direction) == (color, direction), prompt


def test_large_clips_have_the_prompts_shape(pipeline):
    prompts = [p for p in SEEN + HELD_OUT if "large" in p.split()]
    for prompt, video in zip(prompts, pipeline(prompts, seed=0)):
        _, shape, _ = _named(prompt)
        got = measure(video)
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
    with pytest.raises(ValueError, match=r"guidance_scale must be >= 1.0 \(1.0: no guidance\), got 0.5"):
        pipeline("a red circle moving left", guidance_scale=0.5)


def test_guidance_needs_weights_trained_with_caption_dropout(tmp_path):
    scheduler = {"num_train_timesteps": 1000, "beta_schedule": "linear", "timestep_spacing": "trailing"}
    *_, unguided = _written(tmp_path / "w.safetensors", scheduler)
    with pytest.raises(ValueError, match="no unconditional prediction; guidance_scale must be 1.0, got 7.5"):
        unguided("a red dot", guidance_scale=7.5)
    backbone, table = build_backbone(num_layers=1), torch.randn(3, 32)
    config = {"transformer": {}, "vocabulary": ["a", "red", "dot"], "max_words": 4, "guidance_scale": 3.0}
    with pytest.raises(ValueError, match="guidance_scale 3.0 needs the empty caption's vector"):
        write_weights(tmp_path / "x.safetensors", backbone, table, config)


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


def _written(
    path, scheduler: dict, empty: torch.Tensor | None = None, guidance_scale: float = 1.0
) -> tuple[torch.nn.Module, torch.Tensor, EmbeddedPipeline]:
    """A random 1-layer backbone and word table for "a red dot", written to ``path`` and loaded back."""
    torch.manual_seed(0)
    backbone = build_backbone(num_layers=1)
    table = torch.randn(3, 32)
    config = {
        "transformer": {**EMBEDDED_SIZES, "num_layers": 1},
        "vocabulary": ["a", "red", "dot"],
        "max_words": 4,
        "scheduler": scheduler,
        "guidance_scale": guidance_scale,
    }
    return backbone, table, EmbeddedPipeline.from_pretrained(write_weights(path, backbone, table, config, empty))


def test_written_weights_load_into_an_equal_pipeline(tmp_path):
    scheduler = {"num_train_timesteps": 1000, "beta_schedule": "linear", "timestep_spacing": "trailing"}
    backbone, table, loaded = _written(tmp_path / "w.safetensors", scheduler)
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


@pytest.mark.parametrize("guidance", [1.0, 3.0], ids=["unguided", "guided"])
def test_sampler_is_ddim_on_the_training_convention(tmp_path, guidance):
    """The pipeline's loop equals DDIM (eta 0) written out here for the convention videosys-train trains with.

    Training (``videosys.train.objectives``): linear betas 1e-4..0.02 over 1000 steps, ``x_t = a x_0 + s eps``
    with ``a = sqrt(abar_t)``, ``s = sqrt(1 - abar_t)``, and the model predicts ``v = a eps - s x_0``; clips
    are RGB on [-1, 1]. So ``x_0 = a x_t - s v`` (clipped to [-1, 1]), ``eps = a v + s x_t``, and trailing
    spacing starts from t = 999. A different prediction type, schedule, spacing or scaling breaks equality.
    Guided: ``v = v(empty) + g (v(prompt) - v(empty))``, the empty caption being its one stored vector, by
    default at the scale the weights file names.
    """
    scheduler = {
        "num_train_timesteps": 1000,
        "beta_start": 1e-4,
        "beta_end": 0.02,
        "beta_schedule": "linear",
        "prediction_type": "v_prediction",
        "clip_sample": True,
        "set_alpha_to_one": True,
        "timestep_spacing": "trailing",
    }
    empty = torch.randn(32, generator=torch.Generator().manual_seed(1))
    backbone, table, pipeline = _written(tmp_path / "w.safetensors", scheduler, empty, guidance)
    got = pipeline("a red dot", seed=5, num_inference_steps=4, num_frames=2)[0]

    abar = torch.cumprod(1 - torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64), 0)
    x = torch.randn((1, 3, 2, 24, 24), generator=torch.Generator().manual_seed(5)).double()
    text = torch.cat([table, table.new_zeros(1, 32)])[None].double()  # "a red dot", padded to max_words
    mask = torch.tensor([[True, True, True, False]])
    empty_text = torch.cat([empty[None], table.new_zeros(3, 32)])[None].double()
    empty_mask = torch.tensor([[True, False, False, False]])
    steps = [999, 749, 499, 249]
    backbone = backbone.double().eval()
    with torch.no_grad():
        for i, t in enumerate(steps):
            a, s = abar[t].sqrt(), (1 - abar[t]).sqrt()
            v = backbone(x, torch.tensor([t]), text, mask)
            if guidance != 1.0:
                unconditional = backbone(x, torch.tensor([t]), empty_text, empty_mask)
                v = unconditional + guidance * (v - unconditional)
            x0, eps = (a * x - s * v).clamp(-1, 1), a * v + s * x
            prev = abar[steps[i + 1]] if i + 1 < len(steps) else torch.tensor(1.0, dtype=torch.float64)
            x = prev.sqrt() * x0 + (1 - prev).sqrt() * eps
    expected = ((x[0].clamp(-1, 1) + 1) * 127.5).permute(1, 2, 3, 0).numpy()
    assert np.abs(got.astype(np.float64) - expected).max() <= 1.0
