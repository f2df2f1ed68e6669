"""Model registry and PAB defaults."""

from __future__ import annotations

import sys

import diffusers
import pytest

from videosys.core import AttentionAxis, DenoisingStep
from videosys.models import LATTE_PAB, UnknownModelError, get_model, list_models, load


def test_registry_names_and_defaults():
    assert list_models() == ["dit", "dit-xl-2-256", "dit-xl-2-512", "latte"]
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


def test_unknown_model_lists_known_ones():
    expected = "unknown model 'sora'; known models: dit, dit-xl-2-256, dit-xl-2-512, latte"
    with pytest.raises(UnknownModelError, match=expected):
        get_model("sora")


def test_latte_pab_mlp_points_are_the_published_timesteps():
    """Positions in the loop land on timesteps 720..400 of Latte-1's 50-step DDIM schedule."""
    scheduler = diffusers.DDIMScheduler(beta_schedule="linear")
    scheduler.set_timesteps(50)
    steps = [round(point * 50) for point in LATTE_PAB.mlp.points]
    assert [int(scheduler.timesteps[i]) for i in steps] == [720, 640, 560, 480, 400]
    assert (LATTE_PAB.spatial.interval, LATTE_PAB.temporal.interval, LATTE_PAB.cross.interval) == (2, 3, 6)
    assert LATTE_PAB.spatial.window == LATTE_PAB.temporal.window == LATTE_PAB.cross.window == (100, 800)


def test_latte_pab_config_schedule():
    """Converted to videosys.pab's config, the defaults reuse at the intended steps of a 50-step DDIM loop."""
    pytest.importorskip("videosys.pab")
    config = LATTE_PAB.to_pab_config()
    assert config.mlp.positions(50) == [13, 17, 21, 25, 29]
    assert sorted(config.mlp.layers_for(AttentionAxis.TEMPORAL)) == [0, 1, 2, 3, 4]
    timesteps = list(range(980, -1, -20))
    inside = [i for i, t in enumerate(timesteps) if 100 < t < 800]
    for kind, interval in ((AttentionAxis.SPATIAL, 2), (AttentionAxis.TEMPORAL, 3), (AttentionAxis.CROSS, 6)):
        rule = config.broadcast_for(kind)
        reused = [i for i, t in enumerate(timesteps) if rule.reuses(DenoisingStep(i, t, 50))]
        assert reused == [i for i in inside if i % interval], kind
    assert config.full is None


def test_pab_config_needs_the_pab_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "videosys.pab", None)
    with pytest.raises(ImportError, match="pip install videosys-pab"):
        LATTE_PAB.to_pab_config()


def test_dit_checkpoint_size_is_checked(dit_folder):
    with pytest.raises(ValueError, match="latent size 8, but dit-xl-2-256 has latent size 32"):
        load("dit-xl-2-256", dit_folder)
