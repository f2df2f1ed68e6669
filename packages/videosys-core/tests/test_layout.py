import pytest
import torch

from videosys.core import AttentionAxis, check_video_tokens, from_sequences, to_sequences


@pytest.mark.parametrize("axis", list(AttentionAxis))
def test_fold_then_unfold_is_identity(axis):
    x = torch.randn(2, 3, 5, 4, 6)
    y = to_sequences(x, axis)
    assert torch.equal(from_sequences(y, axis, 2, 3, 5), x)


def test_sequences_hold_the_attended_axis():
    b, t, s = 2, 3, 5
    x = torch.arange(b * t * s).reshape(b, t, s, 1)
    spatial = to_sequences(x, AttentionAxis.SPATIAL)
    temporal = to_sequences(x, AttentionAxis.TEMPORAL)
    full = to_sequences(x, "full")
    assert spatial.shape == (b * t, s, 1) and torch.equal(spatial[1, :, 0], x[0, 1, :, 0])
    assert temporal.shape == (b * s, t, 1) and torch.equal(temporal[s + 2, :, 0], x[1, :, 2, 0])
    assert full.shape == (b, t * s, 1) and torch.equal(full[1, :, 0], x[1].flatten())


def test_axis_parse_accepts_names_and_rejects_unknown():
    assert AttentionAxis.parse("Temporal") is AttentionAxis.TEMPORAL
    with pytest.raises(ValueError, match="unknown attention axis 'diagonal'.*'spatial'"):
        AttentionAxis.parse("diagonal")


def test_check_video_tokens_names_bad_rank_and_channels():
    assert check_video_tokens(torch.zeros(1, 2, 3, 4)).tokens == 3
    with pytest.raises(ValueError, match=r"\(B, T, S, C\).*got 3 dims"):
        check_video_tokens(torch.zeros(2, 3, 4))
    with pytest.raises(ValueError, match="has 4 channels.*expected 8"):
        check_video_tokens(torch.zeros(1, 2, 3, 4), channels=8)
    with pytest.raises(TypeError, match="torch.Tensor"):
        check_video_tokens([[1.0]])
