"""The text-to-video base on its own: argument checks with one message each, the three output types, and
the backbone called with fixed text features (a tiny subclass whose VAE halves the latents)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from videosys.models.pipelines import TextToVideoPipeline, negative_prompts_of, prompts_of


class Recorder(nn.Module):
    """A backbone that returns its input and keeps what it was called with."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1, dtype=torch.float64))
        self.calls: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict]] = []

    def forward(self, x: torch.Tensor, t: torch.Tensor, context: torch.Tensor, **kwargs) -> torch.Tensor:
        self.calls.append((x, t, context, kwargs))
        return x


class Halving(TextToVideoPipeline):
    OFFICIAL = "a test folder"
    COMPONENTS = ()

    @classmethod
    def load(cls, root: Path, *, device: torch.device, dtype: torch.dtype, allow_bin: bool) -> Halving:
        return cls(Recorder().to(device, dtype), vae=None, text_encoder=None, tokenizer=None, scheduler=None)

    def decode(self, latents: torch.Tensor, divisor: float = 2.0) -> torch.Tensor:
        return latents / divisor


def pipeline() -> Halving:
    return Halving.load(Path("."), device=torch.device("cpu"), dtype=torch.float64, allow_bin=False)


def test_prompts_become_a_list_and_bad_ones_are_named():
    assert prompts_of("a cat") == ["a cat"]
    assert prompts_of(("a cat", "a dog")) == ["a cat", "a dog"]
    with pytest.raises(ValueError, match=r"^prompt must be a string or a non-empty list of strings, got \[\]$"):
        prompts_of([])
    with pytest.raises(ValueError, match=r"non-empty list of strings, got \['a cat', 3\]$"):
        prompts_of(["a cat", 3])


def test_negative_prompts_one_per_prompt_and_bad_ones_are_named():
    assert negative_prompts_of("snow", 3) == ["snow"] * 3
    assert negative_prompts_of(("snow", "rain"), 2) == ["snow", "rain"]
    with pytest.raises(ValueError, match=r"a list of 3 strings \(one per prompt\), got \['snow', 'rain'\]$"):
        negative_prompts_of(["snow", "rain"], 3)
    with pytest.raises(ValueError, match=r"a list of 1 strings \(one per prompt\), got \[None\]$"):
        negative_prompts_of([None], 1)


def test_an_unknown_output_type_is_named():
    with pytest.raises(ValueError, match=r"^output_type must be 'frames', 'latent' or 'video', got 'gif'$"):
        Halving.check_output_type("gif")
    for output_type in ("frames", "latent", "video"):
        Halving.check_output_type(output_type)


def test_the_three_output_types():
    signs = torch.tensor([-2.0, 2.0, -2.0, 2.0, 2.0, -2.0]).reshape(1, 3, 2, 1, 1).expand(2, 3, 2, 2, 3)
    latents = signs.clone()
    assert pipeline().finish(latents, "latent") is latents
    torch.testing.assert_close(pipeline().finish(latents, "video"), signs / 2, rtol=0, atol=0)
    torch.testing.assert_close(pipeline().finish(latents, "video", divisor=4.0), signs / 4, rtol=0, atol=0)
    frames = pipeline().finish(latents, "frames")
    assert isinstance(frames, list) and len(frames) == 2
    # channels (-1, 1), (-1, 1), (1, -1) over the two frames; -1 -> 0 and 1 -> 255, channels last
    expected = np.broadcast_to(np.array([[0, 0, 255], [255, 255, 0]], np.uint8)[:, None, None], (2, 2, 3, 3))
    for video in frames:
        assert video.dtype == np.uint8
        np.testing.assert_array_equal(video, expected)


def test_the_backbone_gets_the_text_in_its_dtype_and_the_keyword_arguments():
    pipe = pipeline()
    context = torch.randn(2, 5, 4, dtype=torch.float32)
    mask = torch.ones(2, 5, dtype=torch.long)
    model_fn = pipe.text_model_fn(context, encoder_attention_mask=mask)
    x = torch.randn(2, 3, 2, 2, 2, dtype=torch.float32)
    out = model_fn(x, torch.tensor([999, 999]))
    ((seen_x, seen_t, seen_context, kwargs),) = pipe.transformer.calls
    assert seen_x.dtype == seen_context.dtype == out.dtype == torch.float64
    torch.testing.assert_close(seen_context, context.double(), rtol=0, atol=0)
    torch.testing.assert_close(seen_x, x.double(), rtol=0, atol=0)
    assert seen_t.tolist() == [999, 999] and kwargs.keys() == {"encoder_attention_mask"}
    assert kwargs["encoder_attention_mask"] is mask
