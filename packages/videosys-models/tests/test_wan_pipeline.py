"""The Wan 2.1 pipeline on a tiny official-layout folder: end to end, against diffusers' WanPipeline, the CLI."""

from __future__ import annotations

import shutil

import pytest
import torch

from videosys.core.io import load_video
from videosys.models import get_model, list_models
from videosys.models.cli import main
from videosys.models.pipelines import IncompleteWeightsError, WanPipeline
from videosys.models.pipelines.wan import clean_prompt

# 5 frames -> 2 latent frames (temporal factor 4); 32x48 -> 4x6 latents -> a 2x3 token grid.
SMALL = {"num_frames": 5, "height": 32, "width": 48, "num_inference_steps": 4}


def test_wan_video_end_to_end(wan_folder):
    pipe = WanPipeline.from_pretrained(wan_folder)
    frames = pipe(["a cat runs", "a dog"], seed=0, progress=False, **SMALL)
    assert len(frames) == 2 and frames[0].shape == (5, 32, 48, 3) and frames[0].dtype.name == "uint8"
    assert frames[0].std() > 0


def test_wan_sampling_equals_diffusers(wan_saved):
    """Same weights, same seed: the final latents and videos of our loop and of diffusers' WanPipeline (guided,
    4 UniPC steps), ours read back from the folder diffusers saved."""
    reference, folder = wan_saved
    reference.set_progress_bar_config(disable=True)
    ours = WanPipeline.from_pretrained(folder)
    call = {"prompt": "a  cat runs &amp; walks", "negative_prompt": "snow", "guidance_scale": 5.0, **SMALL}
    expected = reference(**call, generator=torch.Generator().manual_seed(3), output_type="latent").frames
    got = ours(**call, seed=3, output_type="latent", progress=False)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)
    expected_video = reference(**call, generator=torch.Generator().manual_seed(3), output_type="pt").frames
    got_video = ours(**call, seed=3, output_type="video", progress=False)
    # diffusers' "pt" output is (B, T, 3, H, W) in [0, 1], ours (B, 3, T, H, W) in [-1, 1]; the VAE amplifies the
    # latents' float32 differences (under 1e-5) a few times
    ours_01 = (got_video.clamp(-1, 1) + 1) / 2
    torch.testing.assert_close(ours_01, expected_video.permute(0, 2, 1, 3, 4), atol=1e-4, rtol=0)


def test_wan_per_prompt_negatives_equal_diffusers(wan_saved):
    """Two prompts, each with its own negative prompt, H > W and 9 frames: the final latents equal diffusers'."""
    reference, folder = wan_saved
    reference.set_progress_bar_config(disable=True)
    call = {
        "prompt": ["a cat runs", "red dog"],
        "negative_prompt": ["snow", "rain at night"],
        "num_frames": 9,
        "height": 48,
        "width": 32,
        "num_inference_steps": 3,
        "guidance_scale": 4.0,
    }
    expected = reference(**call, generator=torch.Generator().manual_seed(1), output_type="latent").frames
    got = WanPipeline.from_pretrained(folder)(**call, seed=1, output_type="latent", progress=False)
    # latents up to about 8 here: float32 rounding reaches 1.2e-5; swapping the two negatives moves them by 0.03
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_wan_prompt_cleaning():
    assert clean_prompt("  a \n cat&amp;amp;dog\t ") == "a cat&dog"


@pytest.mark.parametrize(
    ("call", "message"),
    [
        ({"num_frames": 6}, r"num_frames must be 1 \+ a multiple of 4"),
        ({"height": 40}, "height and width must be positive multiples of 16, got 40x48"),
    ],
)
def test_wan_bad_sizes(wan_folder, call, message):
    pipe = WanPipeline.from_pretrained(wan_folder)
    with pytest.raises(ValueError, match=message):
        pipe("a cat", **{**SMALL, **call})


@pytest.mark.parametrize("component", ["vae", "text_encoder", "scheduler"])
def test_wan_missing_component_is_named(wan_folder, component):
    shutil.rmtree(wan_folder / component)
    with pytest.raises(IncompleteWeightsError, match=f"missing {component}/.*Wan-AI/Wan2.1-T2V-1.3B-Diffusers"):
        WanPipeline.from_pretrained(wan_folder)


def test_wan_registered_with_release_defaults():
    assert {"wan-2.1-t2v-1.3b", "wan-2.1-t2v-14b"} <= set(list_models())
    for name in ("wan-2.1-t2v-1.3b", "wan-2.1-t2v-14b"):
        spec = get_model(name)
        assert spec.pipeline_class() is WanPipeline
        assert dict(spec.defaults) == {
            "num_frames": 81, "height": 480, "width": 832, "num_inference_steps": 50, "guidance_scale": 5.0
        }  # fmt: skip
        assert spec.pab.full.interval == 2 and spec.pab.cross.interval == 6 and spec.pab.full.window == (100, 850)


def test_wan_cli_generates_and_lists(wan_folder, tmp_path, capsys):
    out = tmp_path / "cat.gif"
    argv = ["generate", "--model", "wan-2.1-t2v-1.3b", "--weights", wan_folder, "--prompt", "a cat", "--out", out,
            "--frames", "5", "--resolution", "48x32", "--steps", "3", "--pab"]  # fmt: skip
    assert main([str(a) for a in argv]) == 0
    assert load_video(out).shape == (5, 32, 48, 3)
    capsys.readouterr()
    assert main(["models"]) == 0
    listing = capsys.readouterr().out
    assert "wan-2.1-t2v-1.3b  (text-to-video)" in listing and "wan-2.1-t2v-14b  (text-to-video)" in listing
    assert "Wan-AI/Wan2.1-T2V-1.3B-Diffusers" in listing
