"""Model registry, PAB defaults and the ``videosys`` command line."""

from __future__ import annotations

import sys

import diffusers
import pytest

from videosys.core import AttentionAxis, DenoisingStep
from videosys.core.io import load_video
from videosys.models import LATTE_PAB, UnknownModelError, get_model, list_models, load
from videosys.models.cli import main


def test_registry_names_and_defaults():
    assert list_models() == ["dit-xl-2-256", "dit-xl-2-512", "latte", "videosys-tiny"]
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


def test_unknown_model_lists_known_ones():
    expected = "unknown model 'sora'; known models: dit-xl-2-256, dit-xl-2-512, latte"
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


def test_cli_generates_a_latte_video(latte_folder, tmp_path, capsys):
    out = tmp_path / "cat.gif"
    argv = ["generate", "--model", "latte", "--path", str(latte_folder), "--prompt", "a cat runs", "--out", str(out)]
    assert main([*argv, "--steps", "2", "--frames", "4", "--height", "16", "--width", "16", "--seed", "3"]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    assert load_video(out).shape == (4, 16, 16, 3)


def test_cli_generates_dit_images(dit_256_folder, tmp_path, capsys):
    out = tmp_path / "fish.png"
    argv = ["generate", "--model", "dit-xl-2-256", "--path", str(dit_256_folder), "--out", str(out), "--steps", "2"]
    assert main([*argv, "--prompt", "tench", "--prompt", "7"]) == 0
    paths = capsys.readouterr().out.split()
    assert paths == [str(tmp_path / "fish_0.png"), str(tmp_path / "fish_1.png")]
    import imageio.v3 as iio

    assert iio.imread(paths[0]).shape == (64, 64, 3)


def test_cli_unknown_model_and_bad_output(latte_folder, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["generate", "--model", "sora", "--path", str(tmp_path), "--prompt", "x", "--out", "x.mp4"])
    assert exit_info.value.code == 2
    assert "known models: dit-xl-2-256, dit-xl-2-512, latte" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["generate", "--model", "latte", "--path", str(latte_folder), "--prompt", "x", "--out", "x.png"])
    assert "--out must end in .mp4 or .gif" in capsys.readouterr().err


def test_cli_lists_models(capsys):
    assert main(["models"]) == 0
    assert [line.split()[0] for line in capsys.readouterr().out.splitlines()] == list_models()
