"""CogVideoX's pipeline on tiny official-layout folders: the sampling loop against diffusers' CogVideoXPipeline,
end to end through the registry and the command line, and a folder missing a component."""

from __future__ import annotations

import shutil

import pytest
import torch
from cogvideox_tiny import TINY_2B, save_folder

from videosys.models import registry
from videosys.models.cli import main
from videosys.models.pipelines import CogVideoXPipeline, IncompleteWeightsError

diffusers = pytest.importorskip("diffusers")
if not hasattr(diffusers, "CogVideoXPipeline"):
    pytest.skip(f"diffusers {diffusers.__version__} has no CogVideoXPipeline (0.30+)", allow_module_level=True)

# 9 frames -> 3 latent frames; 24 x 40 pixels -> a 3 x 5 token grid (the 5b one is cropped into its 6 x 9 grid).
CALL = {"num_frames": 9, "height": 24, "width": 40, "num_inference_steps": 3}
TEXT = {"2b": TINY_2B["max_text_seq_length"], "5b": 11}


@pytest.fixture(scope="module", params=["2b", "5b"])
def folder(request, tmp_path_factory):
    return request.param, save_folder(tmp_path_factory.mktemp("cogvideox") / request.param, request.param)


@pytest.mark.parametrize(
    ("dynamic", "negative"), [(False, "blue"), (True, ["blue", "a green hill"])], ids=["cfg", "dynamic-cfg"]
)
def test_sampling_loop_equals_diffusers(folder, dynamic, negative):
    """One negative prompt for both prompts, or one each (with dynamic guidance)."""
    flavour, root = folder
    prompts = ["a cat runs on the beach", "red dog in snow"]
    common = {
        "negative_prompt": negative,
        "guidance_scale": 6.0,
        "use_dynamic_cfg": dynamic,
        "max_sequence_length": TEXT[flavour],
        "output_type": "latent",
        **CALL,
    }
    reference = diffusers.CogVideoXPipeline.from_pretrained(root)
    expected = reference(prompts, generator=torch.Generator().manual_seed(0), return_dict=False, **common)[0]
    got = CogVideoXPipeline.from_pretrained(root)(prompts, seed=0, progress=False, **common)
    torch.testing.assert_close(got, expected.transpose(1, 2), rtol=0, atol=1e-4)


def test_registry_loads_and_decodes_frames(folder):
    flavour, root = folder
    pipeline = registry.load(f"cogvideox-{flavour}", root)
    spec = registry.get_model(f"cogvideox-{flavour}")
    call = {**spec.defaults, **CALL, "max_sequence_length": TEXT[flavour], "progress": False}
    frames = pipeline("a cat walks", seed=1, **call)
    assert len(frames) == 1 and frames[0].shape == (9, 24, 40, 3) and frames[0].dtype.name == "uint8"
    with pytest.raises(ValueError, match="num_frames must be 4k \\+ 1 .* got 8"):
        pipeline("a cat", **{**call, "num_frames": 8})


def test_published_defaults():
    two, five = registry.get_model("cogvideox-2b"), registry.get_model("cogvideox-5b")
    release = {"num_frames": 49, "height": 480, "width": 720, "num_inference_steps": 50, "guidance_scale": 6.0}
    assert dict(two.defaults) == release and dict(five.defaults) == {**release, "use_dynamic_cfg": True}
    assert two.pab.full.interval == 2 and two.pab.full.window == (100.0, 850.0) and five.pab == two.pab


def test_missing_component_is_named(tmp_path):
    root = save_folder(tmp_path / "cogvideox", "2b")
    shutil.rmtree(root / "scheduler")
    with pytest.raises(IncompleteWeightsError, match="is missing scheduler/; expected the layout of THUDM/CogVideoX"):
        CogVideoXPipeline.from_pretrained(root)


def test_cli_lists_and_generates(folder, tmp_path, capsys):
    flavour, root = folder
    assert main(["models"]) == 0
    listing = capsys.readouterr().out
    assert f"cogvideox-{flavour}  (text-to-video)" in listing
    assert "PAB: full every 2 in (100, 850)" in listing
    out = tmp_path / "video.mp4"
    argv = ["generate", "--model", f"cogvideox-{flavour}", "--weights", root, "--prompt", "a cat", "--pab"]
    argv += ["--frames", "5", "--resolution", "16", "--steps", "2", "--out", out]
    assert main([str(a) for a in argv]) == 0, capsys.readouterr().err
    assert out.stat().st_size > 0
