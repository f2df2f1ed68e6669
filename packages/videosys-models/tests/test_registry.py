"""Model registry and PAB defaults."""

from __future__ import annotations

import math

import diffusers
import pytest
import torch

from videosys.core import AttentionAxis, DenoisingStep
from videosys.models import LATTE_PAB, OPENSORA_PAB, UnknownModelError, get_model, list_models, load


def test_registry_names_and_defaults():
    assert list_models() == [
        "cogvideox-2b",
        "cogvideox-5b",
        "dit",
        "dit-xl-2-256",
        "dit-xl-2-512",
        "latte",
        "opensora-1.2",
        "opensora-plan-1.1",
        "opensora-plan-1.2",
        "videosys-tiny",
        "wan-2.1-t2v-1.3b",
        "wan-2.1-t2v-14b",
    ]
    latte = get_model("Latte")
    assert dict(latte.defaults) == {
        "num_frames": 16,
        "height": 512,
        "width": 512,
        "num_inference_steps": 50,
        "guidance_scale": 7.5,
    }
    assert latte.pipeline_class().__name__ == "LattePipeline"
    assert get_model("dit-xl-2-512").sample_size == 64
    assert get_model("dit").sample_size is None  # any size: the folders videosys-train-export writes
    opensora = get_model("opensora-1.2")
    assert opensora.pipeline_class().__name__ == "OpenSoraPipeline" and opensora.pab is OPENSORA_PAB
    assert dict(opensora.defaults) == {  # REFERENCES: 480p 9:16, 2 s = 51 frames, 30 rflow steps, cfg 7.0
        "resolution": "480p",
        "aspect_ratio": "9:16",
        "duration": "2s",
        "num_inference_steps": 30,
        "guidance_scale": 7.0,
    }


def test_unknown_model_lists_known_ones():
    expected = (
        "unknown model 'sora'; known models: cogvideox-2b, cogvideox-5b, dit, dit-xl-2-256, dit-xl-2-512, latte, "
        "opensora-1.2, opensora-plan-1.1, opensora-plan-1.2, videosys-tiny"
    )
    with pytest.raises(UnknownModelError, match=expected):
        get_model("sora")


def test_latte_pab_mlp_points_are_the_published_timesteps():
    """Positions in the loop land on timesteps 720..400 of Latte-1's 50-step DDIM schedule."""
    scheduler = diffusers.DDIMScheduler(beta_schedule="linear")
    scheduler.set_timesteps(50)
    steps = LATTE_PAB.mlp.positions(50)
    assert [int(scheduler.timesteps[i]) for i in steps] == [720, 640, 560, 480, 400]
    assert LATTE_PAB.mlp.steps == 2
    assert (LATTE_PAB.spatial.interval, LATTE_PAB.temporal.interval, LATTE_PAB.cross.interval) == (2, 3, 6)
    assert LATTE_PAB.spatial.window == LATTE_PAB.temporal.window == LATTE_PAB.cross.window == (100, 800)


def test_latte_pab_config_schedule():
    """The defaults reuse at the intended steps of a 50-step DDIM loop."""
    config = LATTE_PAB
    assert config.mlp.positions(50) == [13, 17, 21, 25, 29]
    assert sorted(config.mlp.layers_for(AttentionAxis.TEMPORAL)) == [0, 1, 2, 3, 4]
    timesteps = list(range(980, -1, -20))
    inside = [i for i, t in enumerate(timesteps) if 100 < t < 800]
    for kind, interval in ((AttentionAxis.SPATIAL, 2), (AttentionAxis.TEMPORAL, 3), (AttentionAxis.CROSS, 6)):
        rule = config.broadcast_for(kind)
        reused = [i for i, t in enumerate(timesteps) if rule.reuses(DenoisingStep(i, t, 50))]
        assert reused == [i for i in inside if i % interval], kind
    assert config.full is None


def _opensora_480p_timesteps(num_steps: int = 30, frames: int = 51, height: int = 480, width: int = 854):
    """Open-Sora 1.2's rectified-flow timesteps, from its published transform t' = r t / (1 + (r - 1) t)."""
    ratio = math.sqrt(height * width / 512**2) * math.sqrt(frames // 17 * 5)
    return [1000 * ratio * t / (1 + (ratio - 1) * t) for t in (1 - i / num_steps for i in range(num_steps))]


def test_opensora_pab_defaults_match_the_published_points():
    """MLP reuse lands on the steps whose bf16 timesteps the original names (864, 788, 676), at 480p/51/30."""
    timesteps = _opensora_480p_timesteps()
    assert timesteps[:3] == pytest.approx([1000, 992.9304, 985.4659], abs=1e-4)
    assert timesteps[-1] == pytest.approx(143.105, abs=1e-3)
    steps = OPENSORA_PAB.mlp.positions(30)
    bf16 = torch.tensor([timesteps[i] for i in steps]).to(torch.bfloat16).float().tolist()
    assert bf16 == [864.0, 788.0, 676.0]
    assert OPENSORA_PAB.mlp.steps == 2 and sorted(OPENSORA_PAB.mlp.layers_for(AttentionAxis.SPATIAL)) == [0, 1, 2, 3, 4]
    for kind, interval in ((AttentionAxis.SPATIAL, 2), (AttentionAxis.TEMPORAL, 4), (AttentionAxis.CROSS, 6)):
        rule = OPENSORA_PAB.broadcast_for(kind)
        assert (rule.interval, rule.window, rule.unit) == (interval, (450.0, 930.0), "timestep")


def test_dit_checkpoint_size_is_checked(dit_folder):
    with pytest.raises(ValueError, match="latent size 8, but dit-xl-2-256 has latent size 32"):
        load("dit-xl-2-256", dit_folder)
