"""The command line's errors: one clear line, exit status 2, no traceback; ColossalAI's noise silenced."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import pytest

from videosys.train.cli import main

SMALL = [
    "data.synthetic.num_videos=4",
    "data.synthetic.size=8",
    "data.synthetic.frames=8",
    "data.size=8",
    "data.num_frames=4",
    "train.batch_size=2",
    "model.kwargs={num_layers: 1, num_heads: 2, head_dim: 16}",
]


def _one_error_line(capsys) -> str:
    _, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_an_override_of_the_wrong_type_names_key_value_and_type(capsys, tmp_path):
    assert main(["--tiny", "-o", f"output_dir={tmp_path}", "train.steps=ten"]) == 2
    assert _one_error_line(capsys) == "videosys-train: config error: train.steps='ten' is not an integer"
    assert main(["--tiny", "-o", f"output_dir={tmp_path}", "ema.enabled=maybe"]) == 2
    assert _one_error_line(capsys).endswith("ema.enabled='maybe' is not true or false")


def test_malformed_yaml_says_where(capsys, tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text("train: {steps: 3\nmodel: [\n")
    assert main([str(config)]) == 2
    line = _one_error_line(capsys)
    assert line.startswith(f"videosys-train: config error: {config} is not valid YAML:") and "line 2" in line
    assert main(["--tiny", "-o", "model.kwargs={a: [1"]) == 2
    assert "override 'model.kwargs={a: [1': the value is not valid YAML" in _one_error_line(capsys)


def test_resume_latest_without_a_checkpoint(capsys, tmp_path):
    assert main(["--tiny", "-o", f"output_dir={tmp_path}", "--resume", "latest"]) == 2
    expected = f"--resume latest: no complete checkpoint under {tmp_path / 'checkpoints'}"
    assert expected in _one_error_line(capsys)


@pytest.mark.skipif(importlib.util.find_spec("colossalai") is None, reason="ColossalAI is not installed")
def test_too_little_data_for_one_batch_is_one_line(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["--tiny", "-o", *SMALL, "train.batch_size=5"]) == 2
    expected = "videosys-train: config error: data: 4 samples do not fill one global batch of 5 x 1 ranks"
    assert _one_error_line(capsys).startswith(expected)


def test_resume_latest_without_a_checkpoint_under_torchrun_stops_every_rank_and_says_it_once(torchrun, tmp_path):
    command = [*torchrun, "-m", "videosys.train.cli", "--tiny", "-o", f"output_dir={tmp_path}", "--resume", "latest"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, env={**os.environ})
    output = done.stdout + done.stderr
    assert done.returncode != 0
    assert output.count("videosys-train: config error: --resume latest: no complete checkpoint") == 1, output
    # torchrun reports the ranks' exit status 2 itself; no rank raised (no frame of ours in any traceback).
    assert "exitcode  : 2" in output and "videosys/train" not in output and "FileNotFoundError" not in output


@pytest.mark.skipif(importlib.util.find_spec("colossalai") is None, reason="ColossalAI is not installed")
def test_training_prints_no_colossalai_kernel_warnings(tmp_path):
    command = [sys.executable, "-m", "videosys.train.cli", "--tiny", "-o", *SMALL, "train.steps=1"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "trained to step 1" in done.stdout
    for noise in ("Please install apex", "tensornvme", "broadcast_buffers", "Warning"):
        assert noise not in done.stderr, done.stderr
