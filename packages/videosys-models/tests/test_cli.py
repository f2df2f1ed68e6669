"""The ``videosys`` command line end to end on tiny Latte and DiT folders; every bad input is one line."""

from __future__ import annotations

import json
import re
import shutil

import imageio.v3 as iio
import pytest
import torch

from videosys.core.io import load_video
from videosys.models import registry
from videosys.models.cli import main

SMALL = ["--frames", "4", "--resolution", "16", "--steps", "3"]


def run(capture, *argv: str) -> tuple[int, str, str]:
    try:
        code = main([str(a) for a in argv])
    except SystemExit as done:  # argparse's own exits (--version, unknown options)
        code = done.code
    captured = capture.readouterr()
    return code, captured.out, captured.err


def one_error_line(err: str) -> str:
    """The error output must be exactly one line, without a traceback."""
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


@pytest.mark.parametrize("suffix", [".mp4", ".gif"])
def test_latte_video_end_to_end(latte_folder, tmp_path, capfd, suffix):
    """The file has the requested frames and size; stderr holds only the progress bar (no library noise)."""
    out = tmp_path / f"cat{suffix}"
    argv = ["generate", "--model", "latte", "--weights", latte_folder, "--prompt", "a cat runs", "--out", out]
    code, stdout, stderr = run(capfd, *argv, *SMALL)
    assert code == 0
    assert load_video(out).shape == (4, 16, 16, 3)
    assert stdout.count("\n") == 1 and f"wrote {out} in " in stdout and "3 steps, PAB off" in stdout
    progress = [part for part in stderr.replace("\r", "\n").splitlines() if part.strip()]
    assert progress and all(part.startswith("Latte: ") for part in progress), stderr


def test_path_is_an_alias_of_weights_and_pab_config_reports_saved_calls(latte_folder, tmp_path, capsys):
    """Spatial every 2 steps in (0, 1000): of DDIM's 4 timesteps 750, 500, 250, 0 only step 1 reuses (step 3's
    timestep 0 is outside the open window), in each of the 2 spatial layers; 4 steps x 10 branches are called."""
    config = tmp_path / "pab.json"
    config.write_text(json.dumps({"spatial": {"interval": 2, "window": [0, 1000]}}))
    out = tmp_path / "cat.gif"
    argv = ["generate", "--model", "latte", "--path", latte_folder, "--prompt", "a cat", "--out", out]
    code, stdout, _ = run(capsys, *argv, "--frames", "4", "--resolution", "16", "--steps", "4", "--pab-config", config)
    assert code == 0
    assert "4 steps, PAB saved 2 of 40 attention/MLP branch calls" in stdout


def test_dit_class_by_name_and_index(dit_256_folder, tmp_path, capsys):
    base = ["generate", "--model", "dit-xl-2-256", "--weights", dit_256_folder, "--steps", "2"]
    assert run(capsys, *base, "--class", "tench", "--out", tmp_path / "fish.png")[0] == 0
    assert iio.imread(tmp_path / "fish.png").shape == (64, 64, 3)
    assert run(capsys, *base, "--class", "7", "--out", tmp_path / "cock.gif")[0] == 0
    assert load_video(tmp_path / "cock.gif").shape == (1, 64, 64, 3)
    code, _, err = run(capsys, *base, "--class", "hen", "--out", tmp_path / "hen.png")
    assert code == 1 and "unknown class name 'hen'" in one_error_line(err)


BAD_OPTIONS = [
    (["--frames", "0"], "--frames 0: expected at least 1 frame"),
    (["--frames", "-3"], "--frames -3: expected at least 1 frame"),
    (["--steps", "0"], "--steps 0: expected at least 1 denoising step"),
    (
        ["--model", "sora"],
        "unknown model 'sora'; known models: cogvideox-2b, cogvideox-5b, dit, dit-xl-2-256, dit-xl-2-512, latte, "
        "opensora-1.2, opensora-plan-1.1, opensora-plan-1.2, videosys-tiny",
    ),
    (["--resolution", "big"], "--resolution 'big': expected SIZE or WIDTHxHEIGHT"),
    (["--cfg", "-1"], "--cfg -1.0: expected a guidance scale >= 0"),
    (["--class", "tench"], "--class is for class-conditional models; latte takes --prompt"),
    (["--dtype", "fp16", "--device", "cpu"], "--dtype fp16 needs a CUDA device"),
    (["--dsp"], "--dsp shards over ranks: run under torchrun"),
    (["--out", "cat.avi"], "--out cat.avi: latte writes .mp4, .gif files"),
    (["--pab-config", "missing.json"], "--pab-config missing.json: cannot read it as JSON"),
]


@pytest.mark.parametrize(("options", "message"), BAD_OPTIONS)
def test_bad_options_fail_in_one_line_before_loading(latte_folder, capsys, monkeypatch, options, message):
    monkeypatch.setattr(registry, "load", lambda *a, **k: pytest.fail("weights were loaded before validation"))
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    base = {"--model": "latte", "--weights": str(latte_folder), "--prompt": "a cat"}
    for i in range(0, len(options), 2):
        base.pop(options[i], None)
    argv = [x for pair in base.items() for x in pair]
    code, _, err = run(capsys, "generate", *argv, *options)
    assert code == 1
    assert message in one_error_line(err)


def test_cuda_request_without_cuda_names_the_available_devices(latte_folder, capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    code, _, err = run(capsys, "generate", "--model", "latte", "--weights", latte_folder, "--prompt", "x",
                       "--device", "cuda")  # fmt: skip
    assert code == 1 and "--device cuda: not available here" in one_error_line(err) and "available: cpu" in err


def test_unwritable_output_fails_before_loading(latte_folder, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(registry, "load", lambda *a, **k: pytest.fail("weights were loaded before validation"))
    blocker = tmp_path / "file"
    blocker.write_text("")
    for suffix in (".mp4", ".gif"):
        code, stdout, err = run(capsys, "generate", "--model", "latte", "--weights", latte_folder, "--prompt", "x",
                                "--out", blocker / f"sea{suffix}")  # fmt: skip
        assert code == 1 and stdout == ""
        assert f"--out {blocker}/sea{suffix}: cannot write in {blocker}" in one_error_line(err)


@pytest.mark.parametrize("component", ["text_encoder", "vae"])
def test_incomplete_weights_folder_names_the_missing_part(latte_folder, capsys, component):
    shutil.rmtree(latte_folder / component)
    code, _, err = run(capsys, "generate", "--model", "latte", "--weights", latte_folder, "--prompt", "x")
    line = one_error_line(err)
    assert code == 1 and f"is missing {component}/; expected the layout of maxin-cn/Latte-1" in line


def test_missing_weights_and_unknown_option(latte_folder, capsys):
    code, _, err = run(capsys, "generate", "--model", "latte", "--prompt", "x")
    assert code == 1 and "latte needs --weights DIR, a folder laid out like maxin-cn/Latte-1" in one_error_line(err)
    code, _, err = run(capsys, "generate", "--model", "latte", "--bogus")
    assert code == 2 and "unrecognized arguments: --bogus" in one_error_line(err)


def test_prompt_alone_uses_the_embedded_model(tmp_path, capfd, monkeypatch):
    """No --model, --weights or --out: the shipped weights, ./video.mp4 with the trained 8 frames of 24x24."""
    assert registry.DEFAULT_MODEL == "videosys-tiny"
    monkeypatch.chdir(tmp_path)
    code, stdout, stderr = run(capfd, "generate", "--prompt", "a red circle moving right")
    assert code == 0, stderr
    assert load_video(tmp_path / "video.mp4").shape == (8, 24, 24, 3)
    assert stdout.count("\n") == 1 and "wrote video.mp4 in " in stdout and "20 steps, PAB off" in stdout
    progress = [part for part in stderr.replace("\r", "\n").splitlines() if part.strip()]
    assert progress and all(part.startswith("Embedded: ") for part in progress), stderr
    assert "20/20" in progress[-1]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--frames", "9"], "num_frames must be 1..8 for the embedded model, got 9"),
        (["--resolution", "32"], "the embedded model makes 24x24 clips only, got 32x32"),
        (["--prompt", "a red hexagon moving left"], "unknown word(s) ['hexagon']"),
    ],
)
def test_embedded_model_bad_requests(tmp_path, capsys, options, message):
    out = tmp_path / "x.mp4"
    code, _, err = run(capsys, "generate", "--prompt", "a red circle moving right", "--out", out, *options)
    assert code == 1 and message in one_error_line(err)
    assert not out.exists()


def test_frames_the_model_cannot_make(latte_folder, tmp_path, capsys):
    code, _, err = run(capsys, "generate", "--model", "latte", "--weights", latte_folder, "--prompt", "x",
                       "--frames", "5", "--resolution", "16", "--out", tmp_path / "x.gif")  # fmt: skip
    assert code == 1 and "num_frames 5: this Latte makes 1..4 frames" in one_error_line(err)
    assert not (tmp_path / "x.gif").exists()


def test_models_lists_defaults_and_folders(capsys):
    code, stdout, _ = run(capsys, "models")
    assert code == 0
    assert "latte  (text-to-video)" in stdout
    assert "defaults: frames 16, steps 50, cfg 7.5, resolution 512x512" in stdout
    assert "PAB: spatial every 2 in (100, 800), temporal every 3 in (100, 800), cross every 6 in (100, 800)" in stdout
    assert "weights folder (maxin-cn/Latte-1): transformer/ (" in stdout
    assert stdout.count("weights folder (facebook/DiT-XL-2-256 or -512)") == 3  # dit, dit-xl-2-256, dit-xl-2-512


def test_version(capsys):
    from videosys.models import __version__

    code, stdout, _ = run(capsys, "--version")
    assert code == 0 and stdout.strip() == f"videosys {__version__} (videosys-models)"


OPENSORA_SMALL = ["--model", "opensora-1.2", "--prompt", "a cat runs", "--resolution", "16x16", "--frames", "17",
                  "--steps", "2"]  # fmt: skip


def test_opensora_video_end_to_end_with_pab(opensora_folder, tmp_path, capfd):
    """17 frames at 16x16 (one VAE micro-clip), stderr only the progress bar. PAB's defaults apply: at 16x16
    the timestep shift pulls the 20 steps below 450 but for step 1 (t = 571, in every window, count 1): spatial,
    temporal and cross attention reuse there, 5 + 5 + 10 calls; the MLP reuse of blocks 0-4 adds more."""
    out = tmp_path / "cat.gif"
    argv = ["generate", *OPENSORA_SMALL, "--weights", opensora_folder, "--out", out, "--pab", "--steps", "20"]
    code, stdout, stderr = run(capfd, *argv)
    assert code == 0, stderr
    assert load_video(out).shape == (17, 16, 16, 3)
    saved = re.search(r"20 steps, PAB saved (\d+) of \d+ attention/MLP branch calls", stdout)
    assert saved and int(saved.group(1)) >= 20, stdout
    progress = [part for part in stderr.replace("\r", "\n").splitlines() if part.strip()]
    assert progress and all(part.startswith("rectified flow: ") for part in progress), stderr


def test_opensora_animates_an_image_and_continues_a_clip(opensora_folder, tmp_path, capsys):
    image, clip = tmp_path / "first.png", tmp_path / "clip.gif"
    iio.imwrite(image, (torch.rand(24, 20, 3) * 255).to(torch.uint8).numpy())
    base = ["generate", *OPENSORA_SMALL, "--weights", opensora_folder]
    assert run(capsys, *base, "--image", image, "--out", clip)[0] == 0
    assert load_video(clip).shape == (17, 16, 16, 3)
    out = tmp_path / "more.gif"
    assert run(capsys, *base, "--video", clip, "--keep-frames", "2", "--out", out)[0] == 0
    assert load_video(out).shape == (17, 16, 16, 3)


OPENSORA_BAD_OPTIONS = [
    (["--resolution", "999p"], "--resolution '999p': expected one of 144p, 240p, 360p, 480p, 720p or SIZE"),
    (["--aspect-ratio", "7:5"], "unknown aspect ratio '7:5' (height:width); expected one of 3:8"),
    (["--resolution", "64x48", "--aspect-ratio", "1:1"], "--aspect-ratio goes with a named --resolution"),
    (["--duration", "3s"], "unknown duration '3s'; expected a frame count or one of 2s"),
    (["--frames", "9"], "num_frames == 1 or >= 17"),
    (["--frames", "17", "--duration", "2s"], "--frames and --duration exclude each other"),
    (["--image", "missing.png"], "--image missing.png: cannot read it as an image"),
    (["--video", "missing.gif"], "--video missing.gif: cannot read it as a video"),
    (["--keep-frames", "2"], "--keep-frames 2: expected a count >= 1 of latent frames, with --video"),
]


@pytest.mark.parametrize(("options", "message"), OPENSORA_BAD_OPTIONS)
def test_opensora_bad_options_fail_in_one_line_before_loading(opensora_folder, capsys, monkeypatch, options, message):
    monkeypatch.setattr(registry, "load", lambda *a, **k: pytest.fail("weights were loaded before validation"))
    argv = ["generate", "--model", "opensora-1.2", "--weights", opensora_folder, "--prompt", "a cat", *options]
    code, _, err = run(capsys, *argv)
    assert code == 1
    assert message in one_error_line(err)


def test_image_and_video_with_both_or_with_a_model_without_them(opensora_folder, latte_folder, tmp_path, capsys):
    image = tmp_path / "first.png"
    iio.imwrite(image, torch.zeros(16, 16, 3, dtype=torch.uint8).numpy())
    code, _, err = run(capsys, "generate", "--model", "latte", "--weights", latte_folder, "--prompt", "x",
                       "--image", image)  # fmt: skip
    assert code == 1 and "--image does not apply to latte; models that take it: opensora-1.2" in one_error_line(err)
    code, _, err = run(capsys, "generate", "--model", "opensora-1.2", "--weights", opensora_folder, "--prompt", "x",
                       "--image", image, "--video", image)  # fmt: skip
    assert code == 1 and "--image and --video exclude each other" in one_error_line(err)


def test_models_lists_opensora(capsys):
    code, stdout, _ = run(capsys, "models")
    assert code == 0 and "opensora-1.2  (text-to-video)" in stdout
    assert "defaults: resolution 480p, aspect ratio 9:16, duration 2s, steps 30, cfg 7.0" in stdout
    assert "PAB: spatial every 2 in (450, 930), temporal every 4 in (450, 930), cross every 6 in (450, 930)" in stdout
    assert "transformer/ (STDiT3, hpcai-tech/OpenSora-STDiT-v3), vae/ (VAE 1.2" in stdout
