"""Open-Sora-Plan v1.1 / v1.2 without weights: registry entries, PAB defaults, samplers, release folders, the CLI's
checks (every bad request is one line before anything loads)."""

from __future__ import annotations

import re

import diffusers
import pytest

from videosys.core import AttentionAxis
from videosys.models import OPENSORA_PLAN_V11_PAB, OPENSORA_PLAN_V12_PAB, get_model, registry
from videosys.models.cli import main
from videosys.models.pipelines import OpenSoraPlanV11Pipeline, OpenSoraPlanV12Pipeline


def test_registry_entries_carry_the_release_defaults():
    v11, v12 = get_model("opensora-plan-1.1"), get_model("opensora-plan-1.2")
    assert v11.pipeline_class() is OpenSoraPlanV11Pipeline and v11.pab is OPENSORA_PLAN_V11_PAB
    assert v12.pipeline_class() is OpenSoraPlanV12Pipeline and v12.pab is OPENSORA_PLAN_V12_PAB
    # sample_video_65.sh at v1.1.0: 65x512x512, 150 PNDM steps, cfg 7.5
    assert dict(v11.defaults) == {
        "num_frames": 65, "height": 512, "width": 512, "num_inference_steps": 150, "guidance_scale": 7.5,
    }  # fmt: skip
    # sample_t2v_sp.sh at v1.2.0: 93 frames at 1280x720, 100 EulerAncestral steps, cfg 7.5
    assert dict(v12.defaults) == {
        "num_frames": 93, "height": 720, "width": 1280, "num_inference_steps": 100, "guidance_scale": 7.5,
    }  # fmt: skip
    for spec in (v11, v12):  # the registry's defaults name the pipeline's default folder
        cls = spec.pipeline_class()
        assert cls.load_options(dict(spec.defaults)) == {"variant": cls.VARIANTS[0]}


def test_samplers_are_the_ones_the_sample_scripts_build():
    """The scripts call ``PNDMScheduler()`` and ``EulerAncestralDiscreteScheduler()``: diffusers' defaults."""
    for cls, reference in (
        (OpenSoraPlanV11Pipeline, diffusers.PNDMScheduler()),
        (OpenSoraPlanV12Pipeline, diffusers.EulerAncestralDiscreteScheduler()),
    ):
        scheduler = cls.default_scheduler()
        assert type(scheduler) is type(reference)
        ours = {k: v for k, v in scheduler.config.items() if not k.startswith("_")}
        assert ours == {k: v for k, v in reference.config.items() if not k.startswith("_")}


def test_v11_pab_mlp_reuse_lands_on_the_published_timesteps():
    """Blocks 0-6 reuse their MLP after the steps at timesteps 738, 714, ..., 426 of the 150-step PNDM loop."""
    scheduler = OpenSoraPlanV11Pipeline.default_scheduler()
    scheduler.set_timesteps(150)
    timesteps = scheduler.timesteps.tolist()
    positions = OPENSORA_PLAN_V11_PAB.mlp.positions(len(timesteps))
    assert [timesteps[i] for i in positions] == list(range(738, 425, -24))
    assert OPENSORA_PLAN_V11_PAB.mlp.steps == 2
    assert sorted(OPENSORA_PLAN_V11_PAB.mlp.layers_for(AttentionAxis.TEMPORAL)) == list(range(7))
    for kind, interval in ((AttentionAxis.SPATIAL, 2), (AttentionAxis.TEMPORAL, 4), (AttentionAxis.CROSS, 6)):
        rule = OPENSORA_PLAN_V11_PAB.broadcast_for(kind)
        assert (rule.interval, rule.window, rule.unit) == (interval, (100.0, 850.0), "timestep")
    assert OPENSORA_PLAN_V11_PAB.full is None


def test_v12_pab_broadcasts_full_and_cross_attention():
    config = OPENSORA_PLAN_V12_PAB
    assert (config.full.interval, config.full.window) == (2, (100.0, 850.0))
    assert (config.cross.interval, config.cross.window) == (6, (100.0, 850.0))
    assert config.spatial is None and config.temporal is None and config.mlp is None


def test_release_folders_and_their_sizes():
    assert OpenSoraPlanV11Pipeline.VARIANTS == ("65x512x512", "221x512x512")
    assert OpenSoraPlanV11Pipeline.variant_size("221x512x512") == (221, 512, 512)
    assert OpenSoraPlanV11Pipeline.load_options({"num_frames": 221}) == {"variant": "221x512x512"}
    assert set(OpenSoraPlanV12Pipeline.VARIANTS) == {"29x480p", "29x720p", "93x480p", "93x720p"}
    assert OpenSoraPlanV12Pipeline.variant_size("29x480p") == (29, 480, 640)
    assert OpenSoraPlanV12Pipeline.variant_size("93x720p") == (93, 720, 1280)
    call = {"num_frames": 29, "height": 480, "width": 640}
    assert OpenSoraPlanV12Pipeline.load_options(call) == {"variant": "29x480p"}
    with pytest.raises(ValueError, match="variant '65x512': expected a transformer folder named FRAMESxRESOLUTION"):
        OpenSoraPlanV12Pipeline.variant_size("65x512")
    with pytest.raises(ValueError, match="variant '93x720p': expected a transformer folder named FRAMESxHEIGHTxWIDTH"):
        OpenSoraPlanV11Pipeline.variant_size("93x720p")


@pytest.mark.parametrize(
    ("cls", "call", "message"),
    [
        (OpenSoraPlanV11Pipeline, {"num_frames": 64}, "num_frames 64: expected 1 + 4k frames"),
        (OpenSoraPlanV11Pipeline, {"height": 500}, "height and width must be positive multiples of 8, got 500x512"),
        (OpenSoraPlanV11Pipeline, {"aspect_ratio": "9:16"}, "OpenSoraPlanV11Pipeline takes no argument aspect_ratio"),
        (OpenSoraPlanV12Pipeline, {"num_frames": 0}, "num_frames 0: expected 1 + 4k frames"),
    ],
)
def test_bad_calls_fail_before_loading(cls, call, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        cls.check_call(call)


def run(capture, *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    captured = capture.readouterr()
    return code, captured.out, captured.err


def test_models_lists_both_with_defaults_and_folders(capsys):
    code, stdout, _ = run(capsys, "models")
    assert code == 0
    assert "opensora-plan-1.1  (text-to-video)" in stdout and "opensora-plan-1.2  (text-to-video)" in stdout
    assert "defaults: frames 65, steps 150, cfg 7.5, resolution 512x512" in stdout
    assert "defaults: frames 93, steps 100, cfg 7.5, resolution 1280x720" in stdout
    assert "PAB: full every 2 in (100, 850), cross every 6 in (100, 850)\n" in stdout
    assert "weights folder (LanguageBind/Open-Sora-Plan-v1.1.0): one of 65x512x512/, 221x512x512/ (LatteT2V" in stdout
    assert "(LanguageBind/Open-Sora-Plan-v1.2.0): one of 93x720p/, 93x480p/, 29x720p/, 29x480p/" in stdout
    assert "text_encoder/ (mT5-XXL encoder, google/mt5-xxl), tokenizer/ (mT5-XXL tokenizer, google/mt5-xxl)" in stdout


@pytest.fixture
def skeleton(tmp_path):
    """A folder with the required entries' marker files and the 29x480p / 65x512x512 transformers: enough for
    the checks, which must never read a weight."""
    root = tmp_path / "osp"
    for entry, marker in (("vae", "config.json"), ("text_encoder", "config.json"),
                          ("tokenizer", "tokenizer_config.json"), ("29x480p", "config.json"),
                          ("65x512x512", "config.json")):  # fmt: skip
        (root / entry).mkdir(parents=True)
        (root / entry / marker).write_text("{}")
    return root


@pytest.mark.parametrize(
    ("model", "options", "message"),
    [
        ("opensora-plan-1.1", ["--frames", "221"], "is missing 221x512x512/; expected the layout of LanguageBind"),
        ("opensora-plan-1.1", ["--frames", "64"], "num_frames 64: expected 1 + 4k frames"),
        ("opensora-plan-1.1", ["--resolution", "480p"], "--resolution '480p': expected SIZE or WIDTHxHEIGHT"),
        ("opensora-plan-1.2", [], "is missing 93x720p/; expected the layout of LanguageBind/Open-Sora-Plan-v1.2.0"),
        ("opensora-plan-1.2", ["--resolution", "512"], "folders are for 480p (640x480), 720p (1280x720), not 512x512"),
        ("opensora-plan-1.2", ["--resolution", "4k"], "--resolution '4k': expected one of 480p, 720p or SIZE"),
        ("opensora-plan-1.2", ["--image", "x.png"], "--image does not apply to opensora-plan-1.2"),
    ],
)
def test_bad_requests_are_one_line_before_loading(skeleton, capsys, monkeypatch, model, options, message):
    monkeypatch.setattr(registry, "load", lambda *a, **k: pytest.fail("weights were loaded before validation"))
    code, _, err = run(capsys, "generate", "--model", model, "--weights", skeleton, "--prompt", "a cat", *options)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 1 and len(lines) == 1 and message in lines[0], err


def test_frames_and_resolution_pick_the_folder_the_pipeline_loads(skeleton, capsys, monkeypatch):
    """``--frames 29 --resolution 480p`` asks for 29 frames at 640x480 from ``29x480p/``; the 512x512 of v1.1 from
    ``65x512x512/`` by default."""
    seen = []

    def fake_load(name, path, **kwargs):
        seen.append((name, kwargs["variant"]))
        raise RuntimeError("stop here")

    monkeypatch.setattr(registry, "load", fake_load)
    run(capsys, "generate", "--model", "opensora-plan-1.2", "--weights", skeleton, "--prompt", "x", "--frames", "29",
        "--resolution", "480p")  # fmt: skip
    run(capsys, "generate", "--model", "opensora-plan-1.1", "--weights", skeleton, "--prompt", "x")
    assert seen == [("opensora-plan-1.2", "29x480p"), ("opensora-plan-1.1", "65x512x512")]
