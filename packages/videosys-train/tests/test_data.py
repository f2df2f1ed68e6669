import csv

import numpy as np
import pytest
import torch

from videosys.core.io import load_video, save_video
from videosys.train.config import load_config
from videosys.train.data import ResumableBatchSampler, VideoCaptionDataset, make_shapes_dataset, read_rows
from videosys.train.data.dataset import resize_crop
from videosys.train.data.synthetic import COLORS, DIRECTIONS, SHAPES, SIZES


@pytest.mark.parametrize("size", [8, 24])
def test_synthetic_clips_show_what_their_captions_say(tmp_path, size):
    steps = {"right": (0, 1), "left": (0, -1), "down": (1, 0), "up": (-1, 0)}
    csv_path = make_shapes_dataset(tmp_path, num_videos=12, frames=8, size=size, seed=1)
    for row in read_rows(csv_path):
        words = row["caption"].split()
        assert {row["color"], row["shape"], row["direction"]} <= set(words)
        assert {row["size"], row["speed"]} & set(words) <= {row["size"], row["speed"]}
        frames = load_video(row["path"]).astype(int)
        assert len(frames) == 8  # every frame differs from the last (a GIF drops repeated frames)
        lit = np.abs(frames - np.array(COLORS[row["color"]])).sum(-1) < 30  # pixels of the named colour
        assert lit[0].sum() >= 4
        dy, dx = steps[row["direction"]]
        for t in range(7):  # each frame is the previous one shifted (with wrap-around) the named way
            assert any(np.array_equal(np.roll(lit[t], (dy * k, dx * k), (0, 1)), lit[t + 1]) for k in range(1, 5))
        if size == 24:  # room for the whole path: the shape never wraps, so its bounding box keeps its extent
            extents = {(np.ptp(np.flatnonzero(f.any(1))), np.ptp(np.flatnonzero(f.any(0)))) for f in lit}
            assert len(extents) == 1 and max(extents.pop()) < size // 2


@pytest.mark.parametrize("jitter", [0, 2])
def test_jitter_centres_each_path_give_or_take_that_many_pixels(tmp_path, jitter):
    csv_path = make_shapes_dataset(tmp_path, num_videos=40, frames=8, size=24, seed=2, jitter=jitter)
    offsets = []
    for row in read_rows(csv_path):
        lit = np.abs(load_video(row["path"]).astype(int) - np.array(COLORS[row["color"]])).sum(-1) < 30
        boxes = [[np.flatnonzero(f.any(axis)) for axis in (1, 0)] for f in (lit[0], lit[-1])]
        centres = [np.array([(rows[0] + rows[-1]) / 2, (cols[0] + cols[-1]) / 2]) for rows, cols in boxes]
        middle = (centres[0] + centres[1]) / 2 - 11.5  # the path's midpoint (bounding boxes), from the frame's centre
        offsets.append(np.abs(middle).max())
    assert max(offsets) <= jitter + 1  # + 1: a path of odd length cannot be centred to the pixel
    if jitter:
        assert max(offsets) > 1  # the jitter is used


def test_synthetic_set_covers_the_grammar_but_no_held_out_combination(tmp_path):
    held_out = ["red triangle left", "white circle up"]
    rows = read_rows(make_shapes_dataset(tmp_path, num_videos=150, frames=4, size=8, seed=0, held_out=held_out))
    seen = {(r["color"], r["shape"], r["direction"]) for r in rows}
    assert not seen & {tuple(h.split()) for h in held_out}
    for column, options in (("color", COLORS), ("shape", SHAPES), ("direction", DIRECTIONS), ("size", SIZES)):
        assert {r[column] for r in rows} == set(options)
    captions = [r["caption"].split() for r in rows]
    assert any(len(c) == 5 for c in captions) and any(len(c) == 7 for c in captions)
    with pytest.raises(ValueError, match="unknown shape 'hexagon'"):
        make_shapes_dataset(tmp_path, 1, 4, 8, held_out=["red hexagon left"])


def _numbered_video(path, frames=12, size=8):
    video = np.zeros((frames, size, size, 3), dtype=np.uint8)
    for i in range(frames):
        video[i] = 20 * i  # frame i has value 20 i: which frames were read is visible
    save_video(video, path)


def test_frame_sampling_with_interval_and_seeded_start(tmp_path):
    _numbered_video(tmp_path / "v.gif")
    (tmp_path / "d.csv").write_text("path,caption\nv.gif,numbers\n")
    ds = VideoCaptionDataset(tmp_path / "d.csv", num_frames=4, frame_interval=3, size=8)
    starts = set()
    for seed in range(20):
        video = ds[(0, seed)]["video"]  # (3, T, H, W) in [-1, 1]
        values = ((video[0, :, 0, 0] + 1) * 127.5).round().long().tolist()
        start = values[0] // 20
        assert values == [20 * (start + 3 * k) for k in range(4)]
        assert ds[(0, seed)]["video"].equal(video)  # the seed fixes the clip
        starts.add(start)
    assert starts == {0, 1, 2}  # 12 frames, span 10: starts 0..2


def test_too_short_video_and_missing_columns_are_named(tmp_path):
    _numbered_video(tmp_path / "v.gif", frames=3)
    (tmp_path / "d.csv").write_text("path,caption\nv.gif,x\n")
    with pytest.raises(ValueError, match="has 3 frames; 4 frames every 2 need 7"):
        VideoCaptionDataset(tmp_path / "d.csv", 4, 2, 8)[(0, 0)]
    (tmp_path / "bad.csv").write_text("file,text\na,b\n")
    with pytest.raises(ValueError, match=r"lacks the column\(s\) \['path', 'caption'\]"):
        read_rows(tmp_path / "bad.csv")


def test_resize_crop_keeps_the_centre():
    frames = torch.zeros(1, 3, 8, 16)
    frames[..., 4:12] = 1.0  # the centre half of the width
    out = resize_crop(frames, 8)
    assert out.shape == (1, 3, 8, 8)
    assert torch.equal(out, torch.ones(1, 3, 8, 8))
    square = torch.rand(2, 3, 8, 8)
    assert torch.equal(resize_crop(square, 8), square)  # already the size: untouched


def test_images_are_one_frame_clips(tmp_path):
    import imageio.v3 as iio

    iio.imwrite(tmp_path / "a.png", np.full((6, 10, 3), 255, dtype=np.uint8))
    (tmp_path / "d.csv").write_text("path,caption\na.png,white\n")
    item = VideoCaptionDataset(tmp_path / "d.csv", num_frames=1, size=6)[(0, 0)]
    assert item["video"].shape == (3, 1, 6, 6) and torch.equal(item["video"], torch.ones(3, 1, 6, 6))


def test_data_parallel_ranks_together_see_the_single_rank_batches():
    single = ResumableBatchSampler(20, batch_size=4, seed=3)
    ranks = [ResumableBatchSampler(20, batch_size=2, seed=3, dp_rank=r, dp_size=2) for r in range(2)]
    for epoch in range(2):
        for s in (single, *ranks):
            s.set_position(epoch)
        for big, a, b in zip(single, *ranks, strict=True):
            assert big == a + b
    resumed = ResumableBatchSampler(20, batch_size=4, seed=3)
    resumed.set_position(1, 3)
    single.set_position(1)
    assert list(resumed) == list(single)[3:]


def test_preprocess_writes_latents_equal_to_on_the_fly_encoding(tmp_path, make_config):
    from videosys.train.preprocess import main as preprocess

    config = make_config()
    make_shapes_dataset(tmp_path / "data", 4, 8, 8)
    out = tmp_path / "latents"
    config_file = tmp_path / "c.yaml"
    import yaml

    config_file.write_text(yaml.safe_dump(config.to_dict()))
    assert preprocess([str(config_file), "--out", str(out)]) == 0
    rows = list(csv.DictReader((out / "data.csv").open()))
    assert len(rows) == 4 and set(rows[0]) == {"latent", "caption"}
    from videosys.train.data import LatentDataset, sample_seed
    from videosys.train.text import HashTextEncoder

    stored = LatentDataset(out / "data.csv")[(2, 0)]
    clip = VideoCaptionDataset(config.data.csv, 4, 2, 8)[(2, sample_seed(config.seed, 0, 2))]
    assert torch.equal(stored["latents"], clip["video"])  # identity VAE
    text, mask = HashTextEncoder(32, 16).encode([clip["caption"]])
    assert torch.equal(stored["text"], text[0]) and torch.equal(stored["text_mask"], mask[0])
    precomputed = load_config(None, [f"data.csv={out / 'data.csv'}", "data.precomputed=true"])
    assert precomputed.data.precomputed
