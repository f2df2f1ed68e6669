"""Sequence parallelism (DSP) in the trainer, and the device mesh."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import torch
import yaml

from videosys.train.mesh import ParallelMesh

pytest.importorskip("colossalai", reason="ColossalAI is not installed (see the videosys-train README)")


def _has_dsp() -> bool:
    try:
        from videosys.dsp import parallelize  # noqa: F401
    except ImportError:
        return False
    return True


def test_single_process_mesh_is_one_rank():
    mesh = ParallelMesh.build(1)
    assert (mesh.world_size, mesh.dp_size, mesh.sp_size, mesh.dp_rank, mesh.sp_rank) == (1, 1, 1, 0, 0)
    with pytest.raises(ValueError, match="sp_size=2 needs torch.distributed"):
        ParallelMesh.build(2)


@pytest.mark.parametrize(("rank", "dp_rank", "sp_rank"), [(0, 0, 0), (1, 0, 1), (2, 1, 0), (5, 2, 1)])
def test_mesh_layout_groups_neighbouring_ranks_for_sp(rank, dp_rank, sp_rank):
    mesh = ParallelMesh(world_size=6, rank=rank, sp_size=2)
    assert (mesh.dp_size, mesh.dp_rank, mesh.sp_rank) == (3, dp_rank, sp_rank)


needs_dsp = pytest.mark.skipif(
    not _has_dsp(),
    reason="videosys-dsp's parallelize() is not in this checkout yet (it lands from the dsp branch); "
    "the trainer already calls it for parallel.sp_size > 1",
)


def _torchrun(command: list[str], *args: str) -> None:
    done = subprocess.run(
        [*command, *args], capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONWARNINGS": "ignore"}
    )
    assert done.returncode == 0, done.stderr[-3000:]


@needs_dsp
def test_two_sp_ranks_on_one_sample_give_the_single_rank_gradients(tiny, torchrun, tmp_path):
    from videosys.train.trainer import Trainer

    config = tiny(tmp_path, "train.batch_size=1", "ema.enabled=false")
    trainer = Trainer(config)
    _, _, batch = next(trainer.batches(0, 0))
    loss = trainer.forward_backward(batch)
    expected = {n: p.grad.detach().clone() for n, p in trainer.unwrapped.named_parameters() if p.grad is not None}
    trainer.close()

    config_file = tmp_path / "c.yaml"
    config_file.write_text(yaml.safe_dump(config.to_dict()))
    worker = Path(__file__).with_name("sp_worker.py")
    command = [
        *torchrun,
        str(worker),
        str(config_file),
        str(tmp_path / "rank"),
        "parallel.sp_size=2",
    ]
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONWARNINGS": "ignore"}
    )
    assert done.returncode == 0, done.stderr[-3000:]
    for rank in range(2):
        got = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        torch.testing.assert_close(got["loss"], loss, rtol=1e-5, atol=1e-6)
        assert got["grads"].keys() == expected.keys()
        for name, grad in expected.items():
            torch.testing.assert_close(got["grads"][name], grad, rtol=0, atol=1e-5, msg=name)


@needs_dsp
def test_sequence_parallel_training_and_resume_follow_the_single_rank_trajectory(tiny, torchrun, tmp_path):
    """The CLI under torchrun with sp_size=2: 4 steps (saved at 2 and 4), then 2 more resumed from step 4."""
    from videosys.train.trainer import Trainer

    one = Trainer(tiny(tmp_path / "one", "train.steps=6", "checkpoint.every=4")).fit()
    config = tiny(tmp_path / "sp", "parallel.sp_size=2")
    config_file = tmp_path / "sp.yaml"
    config_file.write_text(yaml.safe_dump(config.to_dict()))
    _torchrun(torchrun, "-m", "videosys.train.cli", str(config_file))
    _torchrun(torchrun, "-m", "videosys.train.cli", str(config_file), "-o", "train.steps=6", "--resume", "latest")
    records = [json.loads(line) for line in (Path(config.output_dir) / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3, 4, 5, 6]
    torch.testing.assert_close([r["loss"] for r in records], one.losses, rtol=1e-5, atol=0)
