"""OpenSoraPipeline on a tiny folder (the golden STDiT3 and VAE fixtures, a tiny T5) against loops written here."""

from __future__ import annotations

import itertools
import math
import shutil

import numpy as np
import pytest
import torch

from videosys.models.pipelines import IncompleteWeightsError, OpenSoraPipeline
from videosys.models.pipelines.opensora import frames_to_video

HEIGHT = WIDTH = 16
FRAMES = 17  # one VAE micro-clip: 5 latent frames
STEPS = 3
CFG = 7.0
SEED = 3


@pytest.fixture
def pipe(opensora_folder):
    return OpenSoraPipeline.from_pretrained(opensora_folder)


def published_timesteps(steps: int, height: int, width: int, frames: int) -> list[float]:
    """Open-Sora 1.2's grid 1000 (1 - i / steps) under ``t' = r t / (1 + (r - 1) t)``, written from the formula."""
    r = math.sqrt(height * width / 512**2) * math.sqrt(frames // 17 * 5)
    grid = [1 - i / steps for i in range(steps)]
    return [1000 * r * t / (1 + (r - 1) * t) for t in grid]


def reference_text(pipe, prompt: str) -> tuple[torch.Tensor, torch.Tensor]:
    """T5 features of ``prompt`` with the aesthetic suffix, padded to STDiT3's 6 tokens, and its mask."""
    null = pipe.transformer.y_embedder.y_embedding
    tokens = pipe.tokenizer(
        [f"{prompt} aesthetic score: 6.5."], padding="max_length", max_length=null.shape[0], truncation=True,
        return_tensors="pt",
    )
    features = pipe.text_encoder(input_ids=tokens.input_ids, attention_mask=tokens.attention_mask).last_hidden_state
    return features, tokens.attention_mask


def test_text_to_video_equals_a_hand_written_rectified_flow(pipe):
    """Euler on the CFG velocity over the published timesteps, with the null caption as the unconditional text,
    fps 24 and the pixel size as conditioning, then the VAE: equal to the pipeline to float rounding."""
    got = pipe("a cat runs", height=HEIGHT, width=WIDTH, num_frames=FRAMES, num_inference_steps=STEPS,
               guidance_scale=CFG, seed=SEED, output_type="video", progress=False)
    with torch.no_grad():
        features, mask = reference_text(pipe, "a cat runs")
        y = torch.cat([features, pipe.transformer.y_embedder.y_embedding[None]])
        z = torch.randn((1, 4, 5, HEIGHT // 2, WIDTH // 2), generator=torch.Generator().manual_seed(SEED))
        times = [*published_timesteps(STEPS, HEIGHT, WIDTH, FRAMES), 0.0]
        for t, t_next in itertools.pairwise(times):
            out = pipe.transformer(torch.cat([z, z]), torch.tensor([t, t]), y, mask=mask.repeat(2, 1), fps=24,
                                   height=HEIGHT, width=WIDTH)
            cond, uncond = out[:, :4].chunk(2)
            z = z + (uncond + CFG * (cond - uncond)) * (t - t_next) / 1000
        expected = pipe.vae.decode(z, FRAMES)
    assert got.shape == (1, 3, FRAMES, HEIGHT, WIDTH)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


def test_frames_output_is_uint8_video(pipe):
    frames = pipe("a dog", height=HEIGHT, width=WIDTH, num_frames=FRAMES, num_inference_steps=1, seed=0,
                  progress=False)
    assert len(frames) == 1 and frames[0].shape == (FRAMES, HEIGHT, WIDTH, 3) and frames[0].dtype == np.uint8


def encoded(pipe, frames: np.ndarray, noise_shape: tuple[int, ...]) -> torch.Tensor:
    """The reference's VAE latents with the pipeline's draws: its noise first, then the posteriors' samples."""
    generator = torch.Generator().manual_seed(SEED)
    torch.randn(noise_shape, generator=generator)
    video = torch.from_numpy(frames).permute(3, 0, 1, 2)[None].float() / 127.5 - 1
    with torch.no_grad():
        return pipe.vae.encode(video, generator=generator)


def smooth_frames(count: int) -> np.ndarray:
    """uint8 frames ``(count, 16, 16, 3)``: moving gradients (the exact size: no resampling)."""
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH]
    frames = [np.stack([x * 15 + k, y * 15, (x + y) * 7 + 3 * k], axis=-1) for k in range(count)]
    return np.clip(frames, 0, 255).astype(np.uint8)


def test_image_to_video_keeps_the_image_latent(pipe):
    """The first latent frame is the image's VAE latent, exactly, and the model sees it (the other frames differ
    from a text-only run). Checked on latents, not pixels: the tiny random VAE is far from faithful (its own
    round trip of the image is off by 0.48 on [-1, 1]) and its temporal decoder mixes the micro-clip's latent
    frames, so decoded pixels could not tell a kept frame from a generated one."""
    image = smooth_frames(1)[0]
    args = {"height": HEIGHT, "width": WIDTH, "num_frames": FRAMES, "num_inference_steps": STEPS, "seed": SEED,
            "progress": False}
    latents = pipe("a cat", image=image, output_type="latent", **args)
    given = encoded(pipe, image[None], latents.shape)
    assert given.shape[2] == 1
    torch.testing.assert_close(latents[:, :, :1], given, rtol=0, atol=0)
    plain = pipe("a cat", output_type="latent", **args)
    assert not torch.allclose(latents[:, :, 1:], plain[:, :, 1:])


def test_video_extension_keeps_the_last_latent_frames_of_the_clip(pipe):
    clip = smooth_frames(FRAMES)
    latents = pipe("a cat", video=clip, keep_frames=2, height=HEIGHT, width=WIDTH, num_frames=FRAMES,
                   num_inference_steps=STEPS, seed=SEED, output_type="latent", progress=False)
    given = encoded(pipe, clip, latents.shape)
    torch.testing.assert_close(latents[:, :, :2], given[:, :, -2:], rtol=0, atol=0)
    assert not torch.allclose(latents[:, :, 2:3], given[:, :, 2:3])


def test_named_sizes_and_durations_resolve_as_open_sora():
    height, width, frames, sampler = OpenSoraPipeline.plan({})
    assert (height, width, frames, sampler.num_steps, sampler.guidance_scale) == (480, 854, 51, 30, 7.0)
    timesteps = sampler.timesteps(height=height, width=width, num_frames=frames)
    assert timesteps[:3].tolist() == pytest.approx([1000, 992.9304, 985.4659], abs=1e-4)
    named = {"resolution": "720p", "aspect_ratio": "1:1", "duration": "4s"}
    assert OpenSoraPipeline.plan(named)[:3] == (960, 960, 102)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        ({"resolution": "999p"}, "unknown resolution '999p'"),
        ({"aspect_ratio": "7:5"}, "unknown aspect ratio '7:5'"),
        ({"duration": "3s"}, "unknown duration '3s'"),
        ({"num_frames": 9}, "num_frames == 1 or >= 17"),
        ({"height": 64}, "give both height and width"),
        ({"image": 1, "video": 1}, "not both"),
        ({"keep_frames": 2}, "keep_frames=2"),
    ],
)
def test_bad_call_arguments_fail_before_sampling(call, message):
    with pytest.raises(ValueError, match=message):
        OpenSoraPipeline.check_call(call)


def test_too_long_a_reference_is_named(pipe):
    with pytest.raises(ValueError, match="the reference gives 5 latent frames but the video has 5"):
        pipe("a cat", video=smooth_frames(FRAMES), height=HEIGHT, width=WIDTH, num_frames=FRAMES, progress=False)


@pytest.mark.parametrize("component", ["transformer", "vae", "text_encoder", "tokenizer"])
def test_missing_component_is_named_with_the_layout(opensora_folder, component):
    shutil.rmtree(opensora_folder / component)
    with pytest.raises(IncompleteWeightsError, match=f"missing {component}/; expected the layout of Open-Sora 1.2"):
        OpenSoraPipeline.from_pretrained(opensora_folder)


def test_reference_frames_are_scaled_to_cover_and_centre_cropped():
    """A 32x64 image for a 16x16 video: halved to 16x32, the middle 16 columns kept. Only its middle (columns
    12..51) is blue, so a crop anywhere else, or a stretch instead of a crop, would bring red in."""
    image = np.zeros((32, 64, 3), dtype=np.uint8)
    image[..., 0] = 255
    image[:, 12:52] = (0, 0, 255)
    video = frames_to_video(image, 16, 16)
    assert video.shape == (1, 3, 1, 16, 16)
    blue = torch.tensor([-1.0, -1.0, 1.0]).reshape(1, 3, 1, 1, 1).expand_as(video)
    torch.testing.assert_close(video, blue, rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match=r"reference frames must be uint8 \(H, W, 3\) or \(T, H, W, 3\)"):
        frames_to_video(image.astype(np.float32), 16, 16)
