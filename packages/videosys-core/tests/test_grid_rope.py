"""GridRotaryEmbedding against rotations written out here, the relative-position property and RoPE3D's math."""

import importlib.util
import math
import os
import sys

import pytest
import torch
import torch.nn.functional as F

from videosys.core import AdaLNBlock, AttentionAxis, Conditioning, SelfAttention, VideoGrid
from videosys.core.layers import GridRotaryEmbedding

FULL, SPATIAL = AttentionAxis.FULL, AttentionAxis.SPATIAL


def hand_rotated(x, grid, axes, split, scales, theta, interleaved, start=(0, 0)):
    """Rotate each channel pair of each token by a 2x2 matrix, one pair at a time, in float64."""
    out = x.double().clone()
    _, frames, tokens, _, _ = x.shape
    for f in range(frames):
        for s in range(tokens):
            t_pos, flat = start[0] + f, start[1] + s
            place = {"t": t_pos, "h": flat // grid.width, "w": flat % grid.width}
            offset = 0
            for axis, width, scale in zip(axes, split, scales):
                for i in range(width // 2):
                    angle = place[axis] / scale * theta ** (-2 * i / width)
                    a, b = (
                        (offset + 2 * i, offset + 2 * i + 1) if interleaved else (offset + i, offset + i + width // 2)
                    )
                    rotation = torch.tensor(
                        [[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]], dtype=torch.float64
                    )
                    pair = x[:, f, s, :, [a, b]].double()  # (B, H, 2)
                    out[:, f, s, :, [a, b]] = pair @ rotation.T
                offset += width
    return out


@pytest.mark.parametrize(
    ("axes", "split", "scales", "interleaved", "axis"),
    [
        ("thw", None, (1.5, 2.0, 0.5), False, FULL),  # Open-Sora-Plan v1.2: equal thirds, halves
        ("thw", (4, 2, 6), (1.0, 1.0, 1.0), True, FULL),  # Wan-like: own split, interleaved pairs
        ("hw", None, (2.0, 1.0), False, SPATIAL),  # 2-D over each frame's rows and columns
    ],
)
def test_grid_rope_equals_a_hand_written_rotation(axes, split, scales, interleaved, axis):
    head_dim = 12
    rope = GridRotaryEmbedding(head_dim, axes, split, theta=100.0, interpolation_scale=scales, interleaved=interleaved)
    grid = VideoGrid(3, 2, 4)
    x = torch.randn(2, 3, 8, 2, head_dim)
    widths = split or [head_dim // len(axes)] * len(axes)
    expected = hand_rotated(x, grid, axes, widths, scales, 100.0, interleaved)
    torch.testing.assert_close(rope(x, axis, grid).double(), expected, rtol=1e-5, atol=1e-5)
    # A shard rotated from its place in the grid (as ring attention does) is the same slice of the whole.
    torch.testing.assert_close(rope(x[:, 1:], axis, grid, (1, 0)), rope(x, axis, grid)[:, 1:], rtol=0, atol=0)
    torch.testing.assert_close(rope(x[:, :, 3:], axis, grid, (0, 3)), rope(x, axis, grid)[:, :, 3:], rtol=0, atol=0)
    half = rope(x.to(torch.bfloat16), axis, grid)
    assert half.dtype == torch.bfloat16
    torch.testing.assert_close(
        half.double(),
        hand_rotated(x.to(torch.bfloat16), grid, axes, widths, scales, 100.0, interleaved),
        rtol=0,
        atol=3e-2,
    )


def scores(rope, axis, grid, q, k):
    """``<R(p) q, R(p') k>`` for every pair of token places ``p, p'`` of the grid: ``(T, S, T, S)``."""
    shape = (1, grid.frames, grid.tokens, 1, q.numel())
    rq, rk = rope(q.expand(shape).clone(), axis, grid), rope(k.expand(shape).clone(), axis, grid)
    return torch.einsum("atsd,auvd->tsuv", rq[..., 0, :].double(), rk[..., 0, :].double())


def test_products_depend_only_on_the_offset_along_each_axis():
    torch.manual_seed(0)
    rope = GridRotaryEmbedding(12, interpolation_scale=(1.0, 2.0, 1.0), theta=50.0)
    grid = VideoGrid(4, 3, 5)
    q, k = torch.randn(12), torch.randn(12)
    dot = scores(rope, FULL, grid, q, k).reshape(4, 3, 5, 4, 3, 5)  # (t, h, w, t', h', w')
    # Moving both tokens one step along an axis keeps the product; moving one of them does not.
    torch.testing.assert_close(dot[1:, :, :, 1:], dot[:-1, :, :, :-1], rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(dot[:, 1:, :, :, 1:], dot[:, :-1, :, :, :-1], rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(dot[:, :, 1:, :, :, 1:], dot[:, :, :-1, :, :, :-1], rtol=1e-6, atol=1e-6)
    for axis in range(3):
        same, moved = dot.select(axis, 0).select(axis + 2, 0), dot.select(axis, 1).select(axis + 2, 0)
        assert (same - moved).abs().max() > 1e-2, f"axis {'thw'[axis]} does not change the product"

    spatial = GridRotaryEmbedding(8, "hw")
    dot = scores(spatial, SPATIAL, VideoGrid(2, 3, 4), q[:8], k[:8]).reshape(2, 3, 4, 2, 3, 4)
    torch.testing.assert_close(dot[:, 1:, :, :, 1:], dot[:, :-1, :, :, :-1], rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(dot[:, :, 1:, :, :, 1:], dot[:, :, :-1, :, :, :-1], rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(dot[0], dot[1])  # no frame in the 2-D rotation


def rope3d_by_tables(tokens, frames, height, width, scales, theta=10000.0):
    """Open-Sora-Plan v1.2's RoPE3D as its algorithm reads: ``(B, heads, N, D)`` tokens in (t, y, x) order.

    Per axis, a (positions, D/3) cos/sin table of ``arange / scale`` times the frequencies, looked up by each
    token's position; the head dim cut in thirds (t, y, x), each rotated by halves.
    """
    third = tokens.shape[-1] // 3
    inv_freq = 1.0 / (theta ** (torch.arange(0, third, 2).float() / third))
    place = torch.cartesian_prod(torch.arange(frames), torch.arange(height), torch.arange(width))
    out = []
    for part, column, extent, scale in zip(tokens.chunk(3, -1), place.T, (frames, height, width), scales):
        table = torch.outer(torch.arange(extent, dtype=torch.float32) / scale, inv_freq)
        table = torch.cat((table, table), dim=-1)
        cos, sin = F.embedding(column, table.cos()), F.embedding(column, table.sin())
        first, second = part[..., : third // 2], part[..., third // 2 :]
        out.append(part * cos + torch.cat((-second, first), dim=-1) * sin)
    return torch.cat(out, dim=-1)


def test_matches_rope3d_math_on_random_inputs():
    torch.manual_seed(0)
    frames, height, width, scales = 3, 4, 5, (1.5, 2.0, 3.0)
    q = torch.randn(2, frames, height * width, 3, 18)
    ours = GridRotaryEmbedding(18, interpolation_scale=scales)(q, FULL, VideoGrid(frames, height, width))
    theirs = rope3d_by_tables(q.flatten(1, 2).transpose(1, 2), frames, height, width, scales)
    torch.testing.assert_close(ours.flatten(1, 2).transpose(1, 2), theirs, rtol=0, atol=0)


OSP = os.environ.get("OPEN_SORA_PLAN_SRC")


@pytest.mark.skipif(not OSP, reason="set OPEN_SORA_PLAN_SRC to a checkout of PKU-YuanGroup/Open-Sora-Plan v1.2.0")
def test_matches_the_original_rope3d():
    """Against ``opensora/models/diffusion/opensora/rope.py`` of Open-Sora-Plan v1.2.0 (adb2a20), imported."""
    path = os.path.join(OSP, "opensora", "models", "diffusion", "opensora", "rope.py")
    spec = importlib.util.spec_from_file_location("osp_rope", path)  # the package __init__s import whole models
    original = importlib.util.module_from_spec(spec)
    sys.path.insert(0, OSP)  # rope.py imports opensora.utils.parallel_states
    try:
        spec.loader.exec_module(original)
    finally:
        sys.path.remove(OSP)
    torch.manual_seed(0)
    # Extents differ per axis: the original caches its tables by (dim, length) alone, so axes of equal length
    # would share the first one's interpolation scale.
    frames, height, width, scales = 3, 4, 5, (1.5, 2.0, 3.0)
    q = torch.randn(2, frames, height * width, 3, 18)
    ours = GridRotaryEmbedding(18, interpolation_scale=scales)(q, FULL, VideoGrid(frames, height, width))
    positions = original.PositionGetter3D()(2, frames, height, width, q.device)
    theirs = original.RoPE3D(interpolation_scale_thw=scales)(q.flatten(1, 2).transpose(1, 2), positions)
    torch.testing.assert_close(ours.flatten(1, 2).transpose(1, 2), theirs, rtol=0, atol=0)


def test_full_attention_rotates_by_the_grid_its_block_passes():
    torch.manual_seed(0)
    grid = VideoGrid(2, 3, 2)
    rope = GridRotaryEmbedding(6)
    block = AdaLNBlock(12, 2, "full", rope=rope)
    attention = block.attn.inner
    x = torch.randn(2, 2, 6, 12)
    q, k, v = attention.project(x)
    rotated_q, rotated_k = rope(q, FULL, grid), rope(k, FULL, grid)
    flat = [t.flatten(1, 2).transpose(1, 2) for t in (rotated_q, rotated_k, v)]  # (B, H, T*S, D)
    expected = F.scaled_dot_product_attention(*flat).transpose(1, 2).reshape(2, 2, 6, 2, 6)
    torch.testing.assert_close(attention(x, grid=grid), attention.output(expected), rtol=1e-5, atol=1e-5)
    # Rows and columns matter: the same tokens on a 2 x 3 grid attend differently.
    assert not torch.allclose(attention(x, grid=grid), attention(x, grid=VideoGrid(2, 2, 3)))
    cond = Conditioning(modulation=torch.randn(2, 6 * 12), grid=grid)
    plain = AdaLNBlock(12, 2, "full")
    plain.load_state_dict(block.state_dict())
    assert not torch.allclose(block(x, cond), plain(x, cond))


def test_bad_configurations_and_grids_are_named():
    with pytest.raises(ValueError, match=r"distinct letters of 'thw'.*got 'tt'"):
        GridRotaryEmbedding(12, "tt")
    with pytest.raises(ValueError, match=r"head dim 8 does not split equally over the 3 axes"):
        GridRotaryEmbedding(8)
    with pytest.raises(ValueError, match=r"channels summing to the head dim 12, got \[4, 3, 5\]"):
        GridRotaryEmbedding(12, split=(4, 3, 5))
    with pytest.raises(ValueError, match=r"one positive number per axis of 'hw', got \[1.0\]"):
        GridRotaryEmbedding(8, "hw", interpolation_scale=(1.0,))
    rope = GridRotaryEmbedding(12)
    x = torch.randn(1, 2, 6, 1, 12)
    with pytest.raises(ValueError, match="needs the video grid: embed\\(\\) must set Conditioning.grid"):
        rope(x, FULL, None)
    with pytest.raises(ValueError, match="spatial attention with axes 'hw'; got spatial attention"):
        rope(x, SPATIAL, VideoGrid(2, 2, 3))
    with pytest.raises(ValueError, match="got temporal attention"):
        GridRotaryEmbedding(8, "hw")(x[..., :8], AttentionAxis.TEMPORAL, VideoGrid(2, 2, 3))
    attention = SelfAttention(12, 1, "full", rope=rope)
    with pytest.raises(ValueError, match=r"over \(T, S\) = \(2, 6\) tokens, but the video grid \(2, 2, 2\)"):
        attention(torch.randn(1, 2, 6, 12), grid=VideoGrid(2, 2, 2))
    with pytest.raises(ValueError, match=r"three positive integers \(frames, height, width\), got \(2, 0, 3\)"):
        attention(torch.randn(1, 2, 6, 12), grid=VideoGrid(2, 0, 3))


def test_grid_origin_and_spacing_place_the_positions():
    """Token (i, j, k) of a placed grid rotates as position origin + index * spacing (CogVideoX's crop)."""
    torch.manual_seed(0)
    q = torch.randn(1, 2, 6, 2, 12)
    grid = VideoGrid(2, 2, 3, origin=(0.0, 1.5, 0.0), spacing=(1.0, 2.25, 0.5))
    rope = GridRotaryEmbedding(12, split=(4, 4, 4), interleaved=True)
    ours = rope(q, FULL, grid)
    t, h, w = torch.meshgrid(torch.arange(2.0), torch.arange(2.0), torch.arange(3.0), indexing="ij")
    coords = {"t": t.reshape(2, 6), "h": (1.5 + 2.25 * h).reshape(2, 6), "w": (0.5 * w).reshape(2, 6)}
    for part, name in zip(range(3), "thw"):
        inv = 1.0 / 10000 ** (torch.arange(0, 4, 2).double() / 4)
        angles = (coords[name].double()[..., None] * inv).repeat_interleave(2, -1)[None, :, :, None]
        pairs = q[..., 4 * part : 4 * part + 4].double()
        turned = torch.stack((-pairs[..., 1::2], pairs[..., 0::2]), dim=-1).flatten(-2)
        expected = pairs * angles.cos() + turned * angles.sin()
        torch.testing.assert_close(ours[..., 4 * part : 4 * part + 4].double(), expected, atol=1e-5, rtol=1e-5)
    assert grid.positions(2, 6, (1, 3))[1].tolist() == [[3.75, 3.75, 3.75, 6.0, 6.0, 6.0]]
    assert VideoGrid(2, 2, 3).positions(1, 2)[2].dtype == torch.int64
