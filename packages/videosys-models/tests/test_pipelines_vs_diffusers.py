"""Whole sampling loops against diffusers' LattePipeline and DiTPipeline on the same tiny folders and seeds."""

from __future__ import annotations

import diffusers
import pytest
import torch

from videosys.core import current_step
from videosys.models.pipelines import DiTPipeline, LattePipeline

LATTE_CALL = {"num_inference_steps": 3, "guidance_scale": 4.0, "height": 16, "width": 16}


def _diffusers_latte(root, vae_folder="vae"):
    vae_cls = diffusers.AutoencoderKLTemporalDecoder if "temporal" in vae_folder else diffusers.AutoencoderKL
    return diffusers.LattePipeline.from_pretrained(root, vae=vae_cls.from_pretrained(root / vae_folder))


@pytest.mark.parametrize("prompt", ["A cat runs on the beach", ["a dog walks in snow", "red cat at sunset"]])
def test_latte_pipeline_latents_equal_diffusers(latte_folder, prompt):
    reference = _diffusers_latte(latte_folder)
    expected = reference(
        prompt,
        video_length=4,
        generator=torch.Generator().manual_seed(0),
        output_type="latent",
        clean_caption=False,
        return_dict=False,
        **LATTE_CALL,
    )[0]
    ours = LattePipeline.from_pretrained(latte_folder, vae="2d")
    got = ours(prompt, num_frames=4, seed=0, output_type="latent", progress=False, **LATTE_CALL)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize("vae", ["2d", "temporal"])
def test_latte_pipeline_video_equals_diffusers(latte_folder, vae):
    reference = _diffusers_latte(latte_folder, "vae_temporal_decoder" if vae == "temporal" else "vae")
    kwargs = {"generator": torch.Generator().manual_seed(1), "clean_caption": False, "return_dict": False}
    expected = reference("a cat", video_length=4, output_type="pt", decode_chunk_size=3, **kwargs, **LATTE_CALL)[0]
    ours = LattePipeline.from_pretrained(latte_folder, vae=vae)
    video = ours("a cat", num_frames=4, seed=1, output_type="video", decode_chunk_size=3, progress=False, **LATTE_CALL)
    # diffusers returns (B, T, 3, H, W) in [0, 1]; ours (B, 3, T, H, W) in [-1, 1].
    torch.testing.assert_close((video / 2 + 0.5).clamp(0, 1).transpose(1, 2), expected, rtol=0, atol=1e-5)
    frames = ours("a cat", num_frames=4, seed=1, decode_chunk_size=3, progress=False, **LATTE_CALL)
    assert len(frames) == 1 and frames[0].shape == (4, 16, 16, 3) and frames[0].dtype.name == "uint8"
    assert (abs(frames[0].astype(int) - (expected[0].permute(0, 2, 3, 1).numpy() * 255).round()) <= 1).all()


def test_latte_ddim_ignores_stray_variance_type(latte_folder):
    """Latte-1's script hands variance_type="learned_range" to DDIM; DDIM still gets only the noise."""
    ours = LattePipeline.from_pretrained(latte_folder)
    plain = ours("a cat", num_frames=4, seed=2, output_type="latent", progress=False, **LATTE_CALL)
    ours.scheduler = diffusers.DDIMScheduler.from_config({**ours.scheduler.config, "variance_type": "learned_range"})
    stray = ours("a cat", num_frames=4, seed=2, output_type="latent", progress=False, **LATTE_CALL)
    torch.testing.assert_close(stray, plain, rtol=0, atol=0)


def test_latte_ddpm_learned_range_equals_diffusers(latte_folder):
    """With DDPM learned_range the predicted variance and the generator's noise both reach the scheduler."""
    scheduler = diffusers.DDPMScheduler(beta_schedule="linear", variance_type="learned_range", clip_sample=False)
    reference = _diffusers_latte(latte_folder)
    reference.scheduler = scheduler
    expected = reference(
        "a dog",
        video_length=4,
        generator=torch.Generator().manual_seed(3),
        output_type="latent",
        clean_caption=False,
        return_dict=False,
        **LATTE_CALL,
    )[0]
    ours = LattePipeline.from_pretrained(latte_folder)
    ours.scheduler = diffusers.DDPMScheduler.from_config(scheduler.config)
    got = ours("a dog", num_frames=4, seed=3, output_type="latent", progress=False, **LATTE_CALL)
    # A random model's variance makes DDPM's latents grow to ~1e7 in 3 steps: compare relative to their size.
    assert (got - expected).abs().max() <= 1e-5 * expected.abs().max()


def test_latte_steps_run_inside_the_denoising_context(latte_folder):
    ours = LattePipeline.from_pretrained(latte_folder)
    seen = []
    ours.transformer.register_forward_pre_hook(lambda module, args: seen.append(current_step()))
    ours("a cat", num_frames=4, seed=0, output_type="latent", progress=False, **LATTE_CALL)
    assert [(s.index, s.num_steps) for s in seen] == [(0, 3), (1, 3), (2, 3)]
    assert [s.timestep for s in seen] == [float(t) for t in ours.scheduler.timesteps]


@pytest.mark.parametrize("guidance_scale", [1.0, 4.0])
def test_dit_pipeline_equals_diffusers(dit_folder, guidance_scale):
    reference = diffusers.DiTPipeline.from_pretrained(dit_folder)
    kwargs = {"num_inference_steps": 3, "guidance_scale": guidance_scale}
    # (B, H, W, 3) in [0, 1]; output_type="np" because diffusers 0.29's DiTPipeline has no "pt".
    expected = reference([7, 0], generator=torch.Generator().manual_seed(0), output_type="np", **kwargs).images
    ours = DiTPipeline.from_pretrained(dit_folder)
    images = ours([7, "tench"], seed=0, output_type="video", progress=False, **kwargs)
    got = (images / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1)
    torch.testing.assert_close(got, torch.from_numpy(expected), rtol=0, atol=1e-5)
    uint8 = ours([7, 0], seed=0, progress=False, **kwargs)
    assert uint8.shape == (2, 16, 16, 3) and uint8.dtype.name == "uint8"
    assert (abs(uint8.astype(int) - (expected * 255).round()) <= 1).all()


# DDPM for DiT is not compared: diffusers' DiTPipeline does not hand its generator to scheduler.step, so its
# DDPM noise comes from the global RNG. The generator -> scheduler path is covered by the Latte DDPM test.


def test_dit_labels(dit_folder):
    ours = DiTPipeline.from_pretrained(dit_folder)
    assert ours.labels == {"Tinca tinca": 0, "cock": 7, "tench": 0}
    assert ours.label_ids(["tench", 5, "12"]) == [0, 5, 12]
    with pytest.raises(ValueError, match="unknown class name 'hen'"):
        ours.label_ids(["hen"])
    with pytest.raises(ValueError, match=r"class id 1000 is outside 0\.\.999"):
        ours.label_ids([1000])
    ours.labels = {}
    with pytest.raises(ValueError, match="no id2label table"):
        ours.label_ids(["tench"])


def test_pipeline_input_errors(latte_folder, dit_folder):
    latte = LattePipeline.from_pretrained(latte_folder)
    with pytest.raises(ValueError, match="prompt must be a string or a non-empty list"):
        latte([], progress=False)
    with pytest.raises(ValueError, match="multiples of 4, got 18x16"):
        latte("a cat", height=18, width=16, progress=False)
    with pytest.raises(ValueError, match="output_type must be"):
        latte("a cat", output_type="pil", progress=False)
    with pytest.raises(ValueError, match="either seed or generator"):
        latte("a cat", seed=1, generator=torch.Generator(), progress=False, **LATTE_CALL)
    with pytest.raises(ValueError, match="'auto', 'temporal' or '2d'"):
        LattePipeline.from_pretrained(latte_folder, vae="3d")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        DiTPipeline.from_pretrained(dit_folder / "missing")
