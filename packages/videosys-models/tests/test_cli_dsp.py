"""``torchrun -m videosys.models generate --dsp`` on 2 CPU gloo ranks: the 1-rank video, errors end every rank."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import numpy as np
import pytest

from videosys.core.io import load_video

pytest.importorskip("videosys.dsp")

ARGS = ["--model", "latte", "--prompt", "a cat runs", "--frames", "4", "--resolution", "16", "--steps", "3"]
OPENSORA_ARGS = ["--model", "opensora-1.2", "--prompt", "a cat runs", "--frames", "17", "--resolution", "16",
                 "--steps", "3"]  # fmt: skip


def videosys(*argv: str, ranks: int = 1, script: list[str] | None = None) -> subprocess.CompletedProcess:
    """Run the CLI in fresh processes, under torchrun when ``ranks > 1`` (``--standalone``: torchrun binds its
    store on a port the kernel picks, instead of the fixed default 29500 that concurrent runs would share).
    ``script`` replaces ``-m videosys.models`` (a file that runs the CLI's ``main`` itself)."""
    launch = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(ranks)] if ranks > 1 else []
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("WORLD_SIZE", None)
    command = [sys.executable, *launch, *(script or ["-m", "videosys.models"]), "generate", *map(str, argv)]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize(
    ("folder", "args", "frames"), [("latte_folder", ARGS, 4), ("opensora_folder", OPENSORA_ARGS, 17)]
)
def test_two_dsp_ranks_write_the_one_rank_video(request, tmp_path, folder, args, frames):
    """Tolerance: one uint8 level (sharded attention sums in another order; measured: identical). Open-Sora's
    5 latent frames do not divide by 2 ranks: STDiT3 rests on T, so frames are padded and trimmed."""
    weights = request.getfixturevalue(folder)
    single = videosys(*args, "--weights", weights, "--out", tmp_path / "one.gif")
    assert single.returncode == 0, single.stderr
    sharded = videosys(*args, "--weights", weights, "--out", tmp_path / "two.gif", "--dsp", ranks=2)
    assert sharded.returncode == 0, sharded.stderr
    assert sharded.stdout.count("wrote") == 1 and "on 2 ranks (DSP)" in sharded.stdout
    one, two = load_video(tmp_path / "one.gif").astype(int), load_video(tmp_path / "two.gif").astype(int)
    assert one.shape == two.shape == (frames, 16, 16, 3)
    assert np.abs(one - two).max() <= 1


def test_two_dsp_ranks_of_the_default_model_write_the_one_rank_video(tmp_path):
    """The embedded default model (no --model, no --weights) sharded over 2 ranks; tolerance as above."""
    prompt = ["--prompt", "a blue square moving up", "--steps", "4"]
    single = videosys(*prompt, "--out", tmp_path / "one.gif")
    assert single.returncode == 0, single.stderr
    sharded = videosys(*prompt, "--out", tmp_path / "two.gif", "--dsp", ranks=2)
    assert sharded.returncode == 0, sharded.stderr
    one, two = load_video(tmp_path / "one.gif").astype(int), load_video(tmp_path / "two.gif").astype(int)
    assert one.shape == two.shape == (8, 24, 24, 3)
    assert np.abs(one - two).max() <= 1


def test_an_error_on_the_ranks_ends_every_rank_printed_once(latte_folder, tmp_path):
    """A corrupt backbone fails while loading, after the ranks joined: every rank exits, rank 0 prints it once."""
    weights = latte_folder / "transformer" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(b"not a safetensors file")
    result = videosys(*ARGS, "--weights", latte_folder, "--out", tmp_path / "x.gif", "--dsp", ranks=2)
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("videosys: error:")]
    assert len(errors) == 1 and errors[0].startswith("videosys: error: rank 0: "), result.stderr
    # No rank prints a traceback; torchrun itself reports the failed launch (one ChildFailedError traceback).
    assert result.stderr.count("Traceback") == result.stderr.count("ChildFailedError:") <= 1, result.stderr
    assert not (tmp_path / "x.gif").exists()


COUNT_THREADS_AROUND_MAIN = """
import os, sys, threading
import videosys.models.cli as cli

def native_threads():
    return len(os.listdir("/proc/self/task")) - threading.active_count()

def full_disk(*args):
    raise OSError("disk full")

if {fail_writing}:
    cli._write = full_disk  # rank 0 fails after the ranks sampled with the parallelized backbone
before = native_threads()
code = cli.main(sys.argv[1:])
print(f"rank {{os.environ['RANK']}} exit {{code}} native threads {{before}} -> {{native_threads()}}", flush=True)
"""


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="counts threads through /proc (Linux)")
@pytest.mark.parametrize(
    ("folder", "args", "fails"),
    [("latte_folder", ARGS, False), ("latte_folder", ARGS, True), ("opensora_folder", OPENSORA_ARGS, False)],
    ids=["latte", "latte-rank-error", "opensora"],
)
def test_the_process_group_threads_end_before_the_interpreter_does(request, tmp_path, monkeypatch, folder, args, fails):
    """The gloo group's threads are joined when ``main`` returns, on success and after a rank error. A group that
    lived on into interpreter finalization aborted a finished run (SIGABRT) under load in CI: a worker thread
    freeing the last collective's tensors needs the GIL, and finalization kills it inside a destructor."""
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")  # the tokenizer's own thread pool is not counted
    script = tmp_path / "count_threads.py"
    script.write_text(COUNT_THREADS_AROUND_MAIN.format(fail_writing=fails))
    weights = request.getfixturevalue(folder)
    result = videosys(*args, "--weights", weights, "--out", tmp_path / "x.gif", "--dsp", ranks=2, script=[str(script)])
    counts = re.findall(r"rank (\d) exit (\d) native threads (\d+) -> (\d+)", result.stdout)
    assert sorted(rank for rank, *_ in counts) == ["0", "1"], result.stdout + result.stderr
    for _rank, code, before, after in counts:
        assert code == ("1" if fails else "0") and after == before, result.stdout + result.stderr
    assert ("rank 0: disk full" in result.stderr) == fails, result.stderr
