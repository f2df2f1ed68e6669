"""Open-Sora-Plan v1.1 and v1.2 pipelines on tiny release-layout folders (the golden backbone and CausalVAE
fixtures, tiny T5 / mT5) against sampling loops written here from the releases' ``opensora/sample/`` with the
diffusers schedulers their scripts build."""

from __future__ import annotations

import re
import shutil

import diffusers
import numpy as np
import pytest
import torch

import videosys.models
import videosys.pab
from videosys.core.io import load_video
from videosys.models.cli import main
from videosys.models.pipelines import IncompleteWeightsError, OpenSoraPlanV11Pipeline, OpenSoraPlanV12Pipeline

FRAMES, HEIGHT, WIDTH = 9, 64, 64  # 3 latent frames of 8x8: the fixtures' latent size
STEPS = 4  # the fewest PNDM's Runge-Kutta warm-up runs with
SEED = 5


def encode(pipe, texts: list[str], length: int) -> tuple[torch.Tensor, torch.Tensor]:
    tokens = pipe.tokenizer([t.lower().strip() for t in texts], padding="max_length", max_length=length,
                            truncation=True, return_tensors="pt")  # fmt: skip
    out = pipe.text_encoder(input_ids=tokens.input_ids, attention_mask=tokens.attention_mask).last_hidden_state
    return out, tokens.attention_mask


def noise(batch: int, generator: torch.Generator, frames: int = FRAMES) -> torch.Tensor:
    return torch.randn((batch, 4, (frames - 1) // 4 + 1, HEIGHT // 8, WIDTH // 8), generator=generator)


def reference_v11(pipe, prompts: list[str], cfg: float, frames: int = FRAMES) -> torch.Tensor:
    """v1.1.0's VideoGenPipeline: 300 T5 tokens, the mask feature, ``[negative; prompt]`` batch, PNDMScheduler();
    one frame as sample_image.sh samples it (``--force_images``: temporal attention off)."""
    with torch.no_grad():
        features, mask = encode(pipe, prompts, 300)
        if len(prompts) == 1:
            keep = int(mask.sum())
            features, negative = features[:, :keep], encode(pipe, [""], 300)[0][:, :keep]
        else:
            features, negative = features * mask[:, :, None], encode(pipe, [""] * len(prompts), 300)[0]
        guided = cfg > 1
        context = torch.cat([negative, features]) if guided else features
        scheduler = diffusers.PNDMScheduler()
        scheduler.set_timesteps(STEPS)
        z = noise(len(prompts), torch.Generator().manual_seed(SEED), frames) * scheduler.init_noise_sigma
        for t in scheduler.timesteps:
            x = scheduler.scale_model_input(torch.cat([z, z]) if guided else z, t)
            out = pipe.transformer(x, t.expand(x.shape[0]), context, enable_temporal_attentions=frames > 1)
            if guided:
                uncond, text = out.chunk(2)
                out = uncond + cfg * (text - uncond)
            z = scheduler.step(out.chunk(2, dim=1)[0], t, z).prev_sample
        return z


def reference_v12(pipe, prompts: list[str], cfg: float) -> torch.Tensor:
    """v1.2.0's sample_t2v.py + OpenSoraPipeline: the prompt template and negative prompt, 512 mT5 tokens, text and
    video masks in the original's shapes, the negative prompt once per prompt, EulerAncestralDiscreteScheduler()
    drawing from the generator."""
    template = "\n    (masterpiece), (best quality), (ultra-detailed), \n    {}. \n    "
    negative_prompt = (  # as the script's triple-quoted string holds it
        "\n    nsfw, lowres, bad anatomy, bad hands, text, error, missing fingers, extra digit, fewer digits, "
        "cropped, worst quality, \n    low quality, normal quality, jpeg artifacts, signature, watermark, username, "
        "blurry.\n    "
    )
    with torch.no_grad():
        features, mask = encode(pipe, [template.format(prompt) for prompt in prompts], 512)
        guided = cfg > 1
        if guided:
            negative, negative_mask = encode(pipe, [negative_prompt] * len(prompts), 512)
            features, mask = torch.cat([negative, features]), torch.cat([negative_mask, mask])
        scheduler = diffusers.EulerAncestralDiscreteScheduler()
        scheduler.set_timesteps(STEPS)
        generator = torch.Generator().manual_seed(SEED)
        z = noise(len(prompts), generator) * scheduler.init_noise_sigma
        for t in scheduler.timesteps:
            x = scheduler.scale_model_input(torch.cat([z, z]) if guided else z, t)
            out = pipe.transformer(x, t.expand(x.shape[0]), features[:, None], encoder_attention_mask=mask[:, None],
                                   attention_mask=torch.ones_like(x)[:, 0])  # fmt: skip
            if guided:
                uncond, text = out.chunk(2)
                out = uncond + cfg * (text - uncond)
            z = scheduler.step(out.chunk(2, dim=1)[0], t, z, generator=generator).prev_sample
        return z


@pytest.fixture(scope="module")
def v11(tmp_path_factory, make_opensora_plan_folder):
    folder = make_opensora_plan_folder(tmp_path_factory.mktemp("osp11"), "v1.1", "65x512x512")
    return OpenSoraPlanV11Pipeline.from_pretrained(folder)


@pytest.fixture(scope="module")
def v12(tmp_path_factory, make_opensora_plan_folder):
    folder = make_opensora_plan_folder(tmp_path_factory.mktemp("osp12"), "v1.2", "29x480p")
    return OpenSoraPlanV12Pipeline.from_pretrained(folder, variant="29x480p")


SMALL = {"num_frames": FRAMES, "height": HEIGHT, "width": WIDTH, "num_inference_steps": STEPS, "seed": SEED,
         "output_type": "latent", "progress": False}  # fmt: skip


@pytest.mark.parametrize(
    ("prompts", "cfg"), [(["a cat runs"], 7.5), (["a cat runs", "a red dog"], 7.5), (["a cat"], 1.0)]
)
def test_v11_equals_the_release_loop(v11, prompts, cfg):
    got = v11(prompts, guidance_scale=cfg, **SMALL)
    assert got.shape == (len(prompts), 4, 3, HEIGHT // 8, WIDTH // 8)
    torch.testing.assert_close(got, reference_v11(v11, prompts, cfg), rtol=1e-4, atol=1e-5)


def test_v11_samples_an_image_as_the_release_image_script(v11):
    got = v11("a cat", guidance_scale=5.0, **{**SMALL, "num_frames": 1})
    assert got.shape == (1, 4, 1, HEIGHT // 8, WIDTH // 8)
    torch.testing.assert_close(got, reference_v11(v11, ["a cat"], 5.0, frames=1), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    ("prompts", "cfg"),
    [(["a cat runs on the beach"], 7.5), (["a cat runs", "a red dog sits"], 7.5), (["a cat runs on the beach"], 1.0)],
)
def test_v12_equals_the_release_loop(v12, prompts, cfg):
    got = v12(prompts, guidance_scale=cfg, **SMALL)
    assert got.shape == (len(prompts), 4, 3, HEIGHT // 8, WIDTH // 8)
    torch.testing.assert_close(got, reference_v12(v12, prompts, cfg), rtol=1e-4, atol=1e-5)


def test_guidance_and_the_prompt_change_the_video(v12):
    """Guards the references: a pipeline ignoring the text or the guidance could not match both of them."""
    base = v12("a cat", guidance_scale=7.5, **SMALL)
    assert not torch.allclose(base, v12("a dog", guidance_scale=7.5, **SMALL), atol=1e-3)
    assert not torch.allclose(base, v12("a cat", guidance_scale=1.0, **SMALL), atol=1e-3)


def test_videos_are_the_vae_decode_of_the_unscaled_latents(v11):
    """The releases' wrapper divides by 0.18215 before decoding; 9 frames decode from 3 latent frames."""
    latents = v11("a cat", **SMALL)
    video = v11("a cat", **{**SMALL, "output_type": "video"})
    assert video.shape == (1, 3, FRAMES, HEIGHT, WIDTH)
    with torch.no_grad():
        torch.testing.assert_close(video, v11.vae.decode(latents / 0.18215), rtol=1e-4, atol=1e-5)


def test_frames_and_the_variant_size(v11, v12):
    assert (v11.variant, v11.num_frames, v11.height, v11.width) == ("65x512x512", 65, 512, 512)
    assert (v12.variant, v12.num_frames, v12.height, v12.width) == ("29x480p", 29, 480, 640)
    frames = v12("a cat", **{**SMALL, "output_type": "frames", "num_inference_steps": 1})
    assert len(frames) == 1 and frames[0].shape == (FRAMES, HEIGHT, WIDTH, 3) and frames[0].dtype == np.uint8
    with pytest.raises(ValueError, match="height and width must be multiples of 16 for this transformer, got 72x64"):
        v11("a cat", **{**SMALL, "height": 72})
    with pytest.raises(ValueError, match="num_inference_steps 3: the PNDM sampler needs at least 4"):
        v11("a cat", **{**SMALL, "num_inference_steps": 3})
    with pytest.raises(ValueError, match="prompt_template must hold '{}'"):
        v12("a cat", prompt_template="no slot", **SMALL)


def test_v12_pab_defaults_reuse_full_and_cross_attention(v12):
    """OPENSORA_PLAN_V12_PAB on the pipeline's backbone (2 blocks). 8 EulerAncestral steps: timesteps 999, 856,
    713, 571, 428, 285, 142, 0, so steps 2-6 are in (100, 850); reuse where step % interval != 0 there: full
    attention (every 2) at steps 3, 5, cross-attention (every 6) at 2, 3, 4, 5; no spatial or temporal kind."""
    with videosys.pab.pab(v12.transformer, videosys.models.OPENSORA_PLAN_V12_PAB):
        v12("a cat", **{**SMALL, "num_inference_steps": 8})
        counts = videosys.pab.stats(v12.transformer)
    assert counts["full"] == {"computed": 8 * 2 - 4, "reused": 2 * 2}, counts
    assert counts["cross"] == {"computed": 8 * 2 - 8, "reused": 4 * 2}, counts
    assert "spatial" not in counts and "temporal" not in counts


@pytest.mark.parametrize("component", ["vae", "text_encoder", "tokenizer", "65x512x512"])
def test_missing_component_is_named(osp11_folder, component):
    shutil.rmtree(osp11_folder / component)
    with pytest.raises(IncompleteWeightsError, match=f"missing {component}/; expected the layout of LanguageBind"):
        OpenSoraPlanV11Pipeline.from_pretrained(osp11_folder)


def test_the_variant_picks_the_folder(osp12_folder):
    """The default variant (93x720p) is not in the tiny folder; naming the one it has loads it through the registry."""
    with pytest.raises(IncompleteWeightsError, match=r"missing 93x720p/; .*one of 93x720p/, 93x480p/"):
        OpenSoraPlanV12Pipeline.from_pretrained(osp12_folder)
    pipe = videosys.models.load("opensora-plan-1.2", osp12_folder, variant="29x480p")
    assert isinstance(pipe, OpenSoraPlanV12Pipeline) and pipe.variant == "29x480p"


def test_cli_generates_from_the_folder_frames_and_resolution_name(osp11_cli_folder, tmp_path, capfd):
    """``--frames 9 --resolution 64`` reads the transformer folder ``9x64x64/``; PAB's defaults apply (13 of the
    14 PNDM calls of 5 steps are in the (100, 850) window, so attention is reused)."""
    out = tmp_path / "cat.gif"
    code = main(["generate", "--model", "opensora-plan-1.1", "--weights", str(osp11_cli_folder), "--prompt", "a cat",
                 "--frames", "9", "--resolution", "64", "--steps", "5", "--pab", "--out", str(out)])  # fmt: skip
    stdout, stderr = capfd.readouterr()
    assert code == 0, stderr
    assert load_video(out).shape == (FRAMES, HEIGHT, WIDTH, 3)
    saved = re.search(r"5 steps, PAB saved (\d+) of \d+ attention/MLP branch calls", stdout)
    assert saved and int(saved.group(1)) > 0, stdout
