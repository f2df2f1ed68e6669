import numpy as np
import pytest
import torch

from videosys.core.io import load_video, save_video, to_uint8_frames


def moving_square(frames=6, size=32):
    video = np.zeros((frames, size, size, 3), dtype=np.uint8)
    for t in range(frames):
        video[t, 8:16, 2 + 3 * t : 10 + 3 * t] = (255, 0, 0)
        video[t, 20:28, 20:28] = (0, 0, 255)
    return video


def test_gif_round_trip_is_exact_for_a_small_palette(tmp_path):
    video = moving_square()
    path = save_video(video, tmp_path / "clip.gif", fps=10)
    loaded = load_video(path)
    assert loaded.shape == video.shape and loaded.dtype == np.uint8
    np.testing.assert_array_equal(loaded, video)


def test_gif_keeps_identical_consecutive_frames(tmp_path):
    video = np.repeat(moving_square(frames=3), [1, 3, 2], axis=0)  # 6 frames, runs of equal ones
    loaded = load_video(save_video(video, tmp_path / "still.gif", fps=24))
    np.testing.assert_array_equal(loaded, video)


def test_mp4_round_trip_keeps_frames_and_size_with_small_error(tmp_path):
    video = moving_square(frames=8, size=64)
    path = save_video(torch.from_numpy(video), tmp_path / "sub" / "clip.mp4", fps=8)
    loaded = load_video(path)
    assert loaded.shape == video.shape
    assert np.abs(loaded.astype(np.float64) - video).mean() < 4.0
    picked = load_video(path, frame_indices=[5, 0])
    np.testing.assert_array_equal(picked, loaded[[5, 0]])


def test_to_uint8_frames_maps_the_value_range():
    video = torch.tensor([-1.0, 0.0, 1.0, 2.0]).reshape(1, 4, 1, 1).expand(3, 4, 1, 1)
    frames = to_uint8_frames(video)
    assert frames.shape == (4, 1, 1, 3)
    assert frames[:, 0, 0, 0].tolist() == [0, 128, 255, 255]


def test_bad_frames_and_paths_are_rejected(tmp_path):
    with pytest.raises(TypeError, match="uint8"):
        save_video(np.zeros((2, 4, 4, 3), dtype=np.float32), tmp_path / "a.gif")
    with pytest.raises(ValueError, match=r"\(T, H, W, 3\)"):
        save_video(np.zeros((4, 4, 3), dtype=np.uint8), tmp_path / "a.gif")
    with pytest.raises(ValueError, match=r"\(T, H, W, 3\)"):
        save_video(np.zeros((2, 4, 4, 4), dtype=np.uint8), tmp_path / "a.gif")
    with pytest.raises(ValueError, match="unsupported video format '.avi'"):
        save_video(np.zeros((2, 4, 4, 3), dtype=np.uint8), tmp_path / "a.avi")
    with pytest.raises(ValueError, match="even frame sizes, got 5x4"):
        save_video(np.zeros((2, 5, 4, 3), dtype=np.uint8), tmp_path / "a.mp4")
    with pytest.raises(FileNotFoundError, match="no video file"):
        load_video(tmp_path / "missing.mp4")
    path = save_video(moving_square(), tmp_path / "ok.gif")
    with pytest.raises(IndexError, match=r"frame indices \[9\] are outside the 6 frames"):
        load_video(path, frame_indices=[0, 9])


@pytest.mark.parametrize("suffix", [".mp4", ".gif"])
def test_unwritable_destination_fails_loudly_and_quietly(tmp_path, capfd, suffix):
    """Writing into a file (not a folder) raises OSError naming the path; nothing else reaches stderr."""
    blocker = tmp_path / "file"
    blocker.write_text("")
    frames = np.zeros((2, 8, 8, 3), np.uint8)
    with pytest.raises(OSError, match=f"cannot write {blocker}/out{suffix}"):
        save_video(frames, blocker / f"out{suffix}")
    import gc

    gc.collect()  # a leaked writer would print its finaliser's traceback here
    assert capfd.readouterr().err == ""


def test_mp4_writing_prints_no_ffmpeg_warnings(tmp_path, capfd):
    save_video(np.zeros((2, 8, 8, 3), np.uint8), tmp_path / "x.mp4")
    assert capfd.readouterr().err == ""
