"""The trainer against itself run differently: resumed vs straight, 2 ranks vs 1, plugin vs plugin."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from videosys.train.checkpoint import latest_checkpoint, list_checkpoints

pytest.importorskip("colossalai", reason="ColossalAI is not installed (see the videosys-train README)")

from videosys.train.trainer import Trainer


def _run(config, resume=None):
    trainer = Trainer(config)
    result = trainer.fit(resume)
    weights = {k: v.detach().clone() for k, v in trainer.unwrapped.state_dict().items()}
    ema = trainer.ema.state_dict() if trainer.ema else None
    return result, weights, ema


def _assert_same_weights(a, b, atol=0.0, skip=()):
    assert a.keys() == b.keys()
    for key in a:
        if not key.endswith(skip):
            torch.testing.assert_close(a[key], b[key], rtol=0, atol=atol, msg=key)


@pytest.fixture(scope="module")
def straight(tmp_path_factory, tiny):
    """4 steps of the tiny config in one go (checkpoints at 2 and 4)."""
    return _run(tiny(tmp_path_factory.mktemp("straight")))


def test_tiny_config_learns(tiny, tmp_path):
    """The tiny config trains videosys.models' own Latte backbone, built by family name and size."""
    from videosys.models import LatteTransformer

    trainer = Trainer(tiny(tmp_path, "train.steps=30", "checkpoint.every=30", "optim.lr=3e-3"))
    assert isinstance(trainer.unwrapped, LatteTransformer)
    result = trainer.fit()
    first, last = sum(result.losses[:5]) / 5, sum(result.losses[-5:]) / 5
    assert last < 0.8 * first, result.losses


def test_a_factory_is_called_with_its_kwargs_only(tiny, tmp_path):
    """The ``package.module:factory`` escape hatch: no data-implied sizes are added to the factory's kwargs."""
    kwargs = "{num_layers: 1, num_heads: 2, head_dim: 8, in_channels: 3, out_channels: 6, sample_size: 8, "
    kwargs += "caption_channels: 32, video_length: 4}"
    overrides = ("model.name=videosys.models:LatteTransformer", "model.size=null", f"model.kwargs={kwargs}")
    trainer = Trainer(tiny(tmp_path, *overrides, "train.steps=2"))
    assert trainer.unwrapped.dim == 16 and trainer.unwrapped.sample_size == 8
    assert len(trainer.fit().losses) == 2


def test_resume_continues_the_identical_trajectory(tiny, tmp_path, straight):
    losses, weights, ema = straight[0].losses, straight[1], straight[2]
    half, _, _ = _run(tiny(tmp_path, "train.steps=2"))
    assert half.losses == losses[:2]
    rest, resumed_weights, resumed_ema = _run(tiny(tmp_path, "train.steps=4"), resume="latest")
    assert rest.losses == losses[2:]
    _assert_same_weights(resumed_weights, weights)
    _assert_same_weights(resumed_ema, ema)


def test_resuming_from_an_earlier_checkpoint_logs_each_step_once(tiny, tmp_path, straight):
    """Steps 3-4 were logged, then the run goes back to the step-2 checkpoint: the log ends as one straight run."""
    config = tiny(tmp_path)
    Trainer(config).fit()
    (step_two,) = [folder for folder in list_checkpoints(config.checkpoint_dir) if folder.name.endswith("step2")]
    Trainer(config).fit(step_two)
    records = [json.loads(line) for line in (tmp_path / "out" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3, 4]
    assert [r["loss"] for r in records] == straight[0].losses


def test_interrupted_save_leaves_a_loadable_previous_checkpoint(tiny, tmp_path, straight, monkeypatch):
    config = tiny(tmp_path)
    real_save = Trainer.save

    def dying_save(self, epoch, step_in_epoch, global_step):
        if global_step == 4:  # the process "dies" after the model is written, before the optimizer

            def die(*args, **kwargs):
                raise KeyboardInterrupt("killed mid-save")

            monkeypatch.setattr(self.booster, "save_optimizer", die)
        return real_save(self, epoch, step_in_epoch, global_step)

    monkeypatch.setattr(Trainer, "save", dying_save)
    with pytest.raises(KeyboardInterrupt):
        Trainer(config).fit()
    monkeypatch.undo()
    folders = sorted(p.name for p in config.checkpoint_dir.iterdir())
    assert folders == [".tmp-epoch0-global_step4", "epoch0-global_step2"]
    assert (config.checkpoint_dir / ".tmp-epoch0-global_step4" / "model").exists()  # half-written, ignored
    assert latest_checkpoint(config.checkpoint_dir).name == "epoch0-global_step2"
    rest, weights, _ = _run(config, resume="latest")
    assert rest.losses == straight[0].losses[2:]
    _assert_same_weights(weights, straight[1])
    assert [p.name for p in list_checkpoints(config.checkpoint_dir)] == ["epoch0-global_step2", "epoch0-global_step4"]
    assert not list(config.checkpoint_dir.glob(".tmp-*"))


def test_hybrid_plugin_matches_torch_ddp_and_resumes_from_sharded_checkpoints(tiny, tmp_path, straight):
    hybrid, weights, _ = _run(tiny(tmp_path, "parallel.plugin=hybrid"))
    torch.testing.assert_close(hybrid.losses, straight[0].losses, rtol=1e-5, atol=0)
    _assert_same_weights(weights, straight[1], atol=1e-5)
    assert (latest_checkpoint(tiny(tmp_path).checkpoint_dir) / "model").is_dir()  # sharded
    again, _, _ = _run(tiny(tmp_path / "b", "parallel.plugin=hybrid", "train.steps=2"))
    rest, _, _ = _run(tiny(tmp_path / "b", "parallel.plugin=hybrid"), resume="latest")
    assert again.losses + rest.losses == hybrid.losses


def test_gradient_checkpointing_changes_nothing_but_memory(tiny, tmp_path, straight):
    result, weights, _ = _run(tiny(tmp_path, "train.gradient_checkpointing=true"))
    torch.testing.assert_close(result.losses, straight[0].losses, rtol=1e-6, atol=0)
    _assert_same_weights(weights, straight[1], atol=1e-6)


def test_bf16_autocast_on_cpu_tracks_fp32(tiny, tmp_path, straight):
    result, _, _ = _run(tiny(tmp_path, "train.precision=bf16"))
    torch.testing.assert_close(result.losses, straight[0].losses, rtol=5e-2, atol=0)


def test_rectified_flow_trains(tiny, tmp_path):
    result, _, _ = _run(tiny(tmp_path, "objective.kind=rflow", "objective.learn_sigma=false"))
    assert len(result.losses) == 4 and all(loss > 0 for loss in result.losses)


def _metrics(output_dir: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (output_dir / "metrics.jsonl").read_text().splitlines()]


def test_two_data_parallel_ranks_equal_one_rank_with_the_doubled_batch(tiny, torchrun, tmp_path):
    """``torchrun`` + the CLI on 2 gloo ranks, batch 2 each, vs one in-process rank with batch 4."""
    one, one_weights, _ = _run(tiny(tmp_path / "one", "train.batch_size=4"))
    two = tiny(tmp_path / "two", "train.batch_size=2")
    config_file = tmp_path / "two.yaml"
    config_file.write_text(yaml.safe_dump(two.to_dict()))
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    command = [
        *torchrun,
        "-m",
        "videosys.train.cli",
        str(config_file),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    torch.testing.assert_close(_metrics(Path(two.output_dir)), one.losses, rtol=1e-5, atol=0)
    model_file = latest_checkpoint(two.checkpoint_dir) / "model"
    # A key bias shifts every score of a query equally, so softmax makes its true gradient exactly 0; Adam
    # rescales the leftover rounding noise (which differs between the two reductions) to lr-sized steps.
    two_weights = torch.load(model_file, map_location="cpu", weights_only=True)
    _assert_same_weights(two_weights, one_weights, atol=1e-5, skip=("to_k.bias",))


def test_cli_trains_the_tiny_config_in_one_process(tmp_path, monkeypatch, capsys):
    from videosys.train.cli import main

    monkeypatch.chdir(tmp_path)
    small = [
        "data.synthetic.num_videos=4",
        "data.synthetic.size=8",
        "data.synthetic.frames=8",
        "data.size=8",
        "data.num_frames=4",
        "train.steps=2",
        "train.batch_size=2",
        "model.kwargs={num_layers: 1, num_heads: 2, head_dim: 16}",
    ]
    assert main(["--tiny", "-o", *small]) == 0
    assert "trained to step 2" in capsys.readouterr().out
    assert latest_checkpoint(tmp_path / "outputs" / "tiny" / "checkpoints").name == "epoch0-global_step2"
    assert len(_metrics(tmp_path / "outputs" / "tiny")) == 2


def test_precomputed_latents_train_like_on_the_fly_encoding(tiny, tmp_path, straight):
    """Within epoch 0 the preprocessed clips are the ones the on-the-fly run reads: identical losses."""
    from videosys.train.preprocess import main as preprocess

    config = tiny(tmp_path)
    config_file = tmp_path / "c.yaml"
    config_file.write_text(yaml.safe_dump(config.to_dict()))
    assert preprocess([str(config_file), "--out", str(tmp_path / "latents")]) == 0
    overrides = (f"data.csv={tmp_path / 'latents' / 'data.csv'}", "data.precomputed=true", "data.synthetic=null")
    result, _, _ = _run(tiny(tmp_path / "p", *overrides))
    assert result.losses == straight[0].losses


def test_sigkill_during_a_save_then_resume_matches_the_straight_run(tiny, tmp_path):
    """A real ``kill -9`` the moment a save has started; the resumed run rejoins the straight trajectory."""
    steps = ("train.steps=8", "checkpoint.every=1", "checkpoint.keep=2")
    straight, straight_weights, _ = _run(tiny(tmp_path / "straight", *steps))
    config = tiny(tmp_path / "killed", *steps)
    config_file = tmp_path / "killed.yaml"
    config_file.write_text(yaml.safe_dump(config.to_dict()))
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    process = subprocess.Popen(
        [sys.executable, "-m", "videosys.train.cli", str(config_file)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    root = config.checkpoint_dir
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and process.poll() is None:
            names = os.listdir(root) if root.is_dir() else []
            if list_checkpoints(root) and any(n.startswith(".tmp-") for n in names):
                break
            time.sleep(0.001)
        process.kill()
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    latest = latest_checkpoint(root)
    # Usually a half-written .tmp- folder is left here (the kill landed inside the save); either way the
    # latest complete checkpoint must load and continue exactly.
    assert latest is not None
    done = int(latest.name.split("global_step")[1])
    assert done < 8, "the run finished before it could be killed"
    rest, weights, _ = _run(tiny(tmp_path / "killed", *steps), resume="latest")
    assert rest.losses == straight.losses[done:]
    _assert_same_weights(weights, straight_weights)
