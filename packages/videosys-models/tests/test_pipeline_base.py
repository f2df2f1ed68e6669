"""The shared pipeline base: incomplete weights folders fail before loading, and given frames stay given."""

from __future__ import annotations

import shutil

import pytest
import torch

from videosys.models.pipelines import DiTPipeline, FrameCondition, IncompleteWeightsError, LattePipeline

CALL = {"num_frames": 4, "height": 16, "width": 16, "num_inference_steps": 3, "guidance_scale": 4.0, "progress": False}


@pytest.mark.parametrize("component", ["vae", "text_encoder", "tokenizer", "scheduler", "transformer"])
def test_latte_folder_missing_a_component_names_it_and_the_layout(latte_folder, component):
    shutil.rmtree(latte_folder / component)
    with pytest.raises(IncompleteWeightsError) as info:
        LattePipeline.from_pretrained(latte_folder)
    message = str(info.value)
    assert f"is missing {component}/;" in message
    assert "\n" not in message
    assert "expected the layout of maxin-cn/Latte-1: transformer/ (" in message
    for entry in ("vae/", "text_encoder/", "tokenizer/", "scheduler/", "vae_temporal_decoder/ ("):
        assert entry in message


def test_missing_marker_files_and_several_components_are_all_named(latte_folder, dit_folder):
    (latte_folder / "text_encoder" / "config.json").unlink()
    shutil.rmtree(latte_folder / "scheduler")
    with pytest.raises(IncompleteWeightsError, match=r"is missing text_encoder/config\.json, scheduler/;"):
        LattePipeline.from_pretrained(latte_folder)
    shutil.rmtree(dit_folder / "vae")
    with pytest.raises(IncompleteWeightsError, match=r"is missing vae/; expected the layout of facebook/DiT-XL-2"):
        DiTPipeline.from_pretrained(dit_folder)


def test_asking_for_the_temporal_decoder_of_a_folder_without_one(latte_folder):
    shutil.rmtree(latte_folder / "vae_temporal_decoder")
    with pytest.raises(IncompleteWeightsError, match="is missing vae_temporal_decoder/"):
        LattePipeline.from_pretrained(latte_folder, vae="temporal")


def test_given_frames_are_noised_to_each_step_and_kept_exactly(latte_folder):
    """The model sees the given frames at sqrt(abar_t) x0 + sqrt(1 - abar_t) noise (DDPM's forward process,
    computed here from the betas), and the result holds them; the other frames are denoised."""
    pipeline = LattePipeline.from_pretrained(latte_folder, vae="2d")
    free = pipeline("a cat", seed=0, output_type="latent", **CALL)
    clean = torch.randn(free.shape, generator=torch.Generator().manual_seed(9))
    mask = torch.tensor([True, False, False, True])
    seen = []
    pipeline.transformer.register_forward_pre_hook(lambda module, args: seen.append(args[0][:1].clone()))
    conditioned = pipeline("a cat", seed=0, output_type="latent", given_frames=FrameCondition(clean, mask), **CALL)
    torch.testing.assert_close(conditioned[:, :, mask], clean[:, :, mask], rtol=0, atol=0)
    assert not torch.allclose(conditioned[:, :, ~mask], free[:, :, ~mask])

    noise = torch.randn(free.shape, generator=torch.Generator().manual_seed(0))
    abar = torch.cumprod(1 - torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64), 0)
    for x, t in zip(seen, pipeline.scheduler.timesteps):
        a = abar[int(t)]
        expected = (a.sqrt() * clean + (1 - a).sqrt() * noise).float()
        torch.testing.assert_close(x[:, :, mask], expected[:, :, mask], rtol=0, atol=1e-5)


def test_no_given_frames_is_the_plain_sampler(latte_folder):
    pipeline = LattePipeline.from_pretrained(latte_folder, vae="2d")
    free = pipeline("a cat", seed=0, output_type="latent", **CALL)
    none = FrameCondition(torch.zeros_like(free), torch.zeros(4, dtype=torch.bool))
    torch.testing.assert_close(
        pipeline("a cat", seed=0, output_type="latent", given_frames=none, **CALL), free, rtol=0, atol=0
    )
    with pytest.raises(ValueError, match=r"frame mask \(3,\) must be \(T,\) or \(B, T\)"):
        pipeline("a cat", seed=0, given_frames=FrameCondition(free, torch.zeros(3, dtype=torch.bool)), **CALL)
