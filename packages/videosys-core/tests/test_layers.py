"""Shared layers against closed forms written out in the tests."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from videosys.core import AttentionAxis, SelfAttention
from videosys.core.layers import (
    AxisEmbedding,
    FinalLayer,
    LabelEmbedder,
    PatchEmbed2D,
    PatchEmbed3D,
    RMSNorm,
    RotaryEmbedding,
    make_norm,
    sincos_1d,
    sincos_2d,
    split_modulation,
    timestep_embedding,
    unpatchify,
)


def test_timestep_embedding_matches_the_dit_formula():
    t = torch.tensor([0.0, 3.5, 999.0])
    dim, half = 8, 4
    expected = np.zeros((3, dim))
    for i, tv in enumerate(t.tolist()):
        for j in range(half):
            freq = math.exp(-math.log(10000) * j / half)
            expected[i, j] = math.cos(tv * freq)
            expected[i, half + j] = math.sin(tv * freq)
    np.testing.assert_allclose(timestep_embedding(t, dim).numpy(), expected, atol=1e-4)
    unflipped = timestep_embedding(t, dim, flip_sin_to_cos=False)
    torch.testing.assert_close(unflipped[:, :half], torch.from_numpy(expected[:, half:]).float(), atol=1e-4, rtol=0)


def test_sincos_2d_matches_the_mae_grid_formula():
    h, w, dim = 2, 3, 8
    emb = sincos_2d(h, w, dim)
    quarter = dim // 4
    omega = [1.0 / 10000 ** (i / quarter) for i in range(quarter)]
    for r in range(h):
        for c in range(w):
            row = emb[r * w + c]
            col_part = [math.sin(c * o) for o in omega] + [math.cos(c * o) for o in omega]
            row_part = [math.sin(r * o) for o in omega] + [math.cos(r * o) for o in omega]
            np.testing.assert_allclose(row.numpy(), col_part + row_part, atol=1e-12)
    scaled = sincos_2d(4, 4, dim, base_size=2)  # positions advance by 0.5 per token
    torch.testing.assert_close(scaled[1, :quarter], torch.sin(0.5 * torch.tensor(omega, dtype=torch.float64)))
    assert sincos_1d(torch.arange(5), 6).shape == (5, 6)


def test_rope_rotates_pairs_by_position_and_keeps_relative_products():
    rope = RotaryEmbedding(4, theta=100.0)
    x = torch.randn(1, 5, 1, 1, 4)
    out = rope(x, AttentionAxis.TEMPORAL)
    for pos in range(5):
        for pair, freq in enumerate([1.0, 1.0 / 10.0]):
            a, b = x[0, pos, 0, 0, 2 * pair : 2 * pair + 2]
            angle = pos * freq
            expected = torch.stack(
                [
                    a * math.cos(angle) - b * math.sin(angle),
                    a * math.cos(angle) * 0 + b * math.cos(angle) + a * math.sin(angle),
                ]
            )
            torch.testing.assert_close(out[0, pos, 0, 0, 2 * pair : 2 * pair + 2], expected, atol=1e-6, rtol=1e-5)
    q = torch.randn(4)
    k = torch.randn(4)

    def dot(m, n):
        qs = rope(q.expand(1, 8, 1, 1, 4).clone(), AttentionAxis.TEMPORAL)[0, m, 0, 0]
        ks = rope(k.expand(1, 8, 1, 1, 4).clone(), AttentionAxis.TEMPORAL)[0, n, 0, 0]
        return (qs * ks).sum()

    torch.testing.assert_close(dot(5, 2), dot(3, 0), atol=1e-5, rtol=1e-5)
    half = RotaryEmbedding(4, interleaved=False)(x, AttentionAxis.TEMPORAL)
    assert not torch.allclose(half, out)
    with pytest.raises(ValueError, match="temporal or spatial axis"):
        rope(x, AttentionAxis.FULL)


def test_attention_applies_its_rope_along_its_axis():
    torch.manual_seed(0)
    rope = RotaryEmbedding(4)
    attn = SelfAttention(8, 2, "temporal", rope=rope)
    plain = SelfAttention(8, 2, "temporal")
    plain.load_state_dict(attn.state_dict())
    x = torch.randn(1, 6, 2, 8)
    q, k, v = plain.project(x)
    rotated = plain.output(plain.mix(rope(q, AttentionAxis.TEMPORAL), rope(k, AttentionAxis.TEMPORAL), v))
    torch.testing.assert_close(attn(x), rotated)
    assert not torch.allclose(attn(x), plain(x))


def test_rms_norm_and_norm_choice():
    x = torch.randn(3, 8)
    norm = RMSNorm(8, eps=1e-6)
    norm.weight.data = torch.arange(8.0)
    expected = x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * torch.arange(8.0)
    torch.testing.assert_close(norm(x), expected)
    assert isinstance(make_norm("layer", 8), torch.nn.LayerNorm)
    with pytest.raises(ValueError, match="unknown norm kind 'batch'"):
        make_norm("batch", 8)


def test_patch_embed_2d_is_a_per_frame_conv_in_row_major_order():
    embed = PatchEmbed2D(2, 3, 5)
    latents = torch.randn(2, 3, 4, 6, 8)
    tokens = embed(latents)
    assert tokens.shape == (2, 4, 12, 5)
    frame = F.conv2d(latents[1, :, 2][None], embed.proj.weight, embed.proj.bias, stride=2)  # (1, 5, 3, 4)
    torch.testing.assert_close(tokens[1, 2, 1 * 4 + 3], frame[0, :, 1, 3])
    with pytest.raises(ValueError, match="not divisible by the patch size 2"):
        embed(torch.randn(1, 3, 1, 5, 8))
    with pytest.raises(ValueError, match="has 4 channels|have 4 channels"):
        embed(torch.randn(1, 4, 1, 6, 8))


def test_unpatchify_inverts_patch_order():
    b, c, t, h, w = 1, 2, 4, 6, 4
    pt, p = 2, 2
    latents = torch.randn(b, c, t, h, w)
    # patchify by hand: token (frame block, row, col), channels ordered (pt, ph, pw, C)
    tokens = torch.empty(b, t // pt, (h // p) * (w // p), pt * p * p * c)
    for f in range(t // pt):
        for r in range(h // p):
            for col in range(w // p):
                patch = latents[0, :, f * pt : (f + 1) * pt, r * p : (r + 1) * p, col * p : (col + 1) * p]
                tokens[0, f, r * (w // p) + col] = patch.permute(1, 2, 3, 0).reshape(-1)
    torch.testing.assert_close(unpatchify(tokens, c, (pt, p, p), (h // p, w // p)), latents)
    with pytest.raises(ValueError, match="do not form the 2x2 grid"):
        unpatchify(tokens, c, (pt, p, p), (2, 2))


def test_patch_embed_3d_shapes_and_errors():
    embed = PatchEmbed3D((1, 2, 2), 4, 8)
    assert embed(torch.randn(2, 4, 3, 4, 6)).shape == (2, 3, 6, 8)
    with pytest.raises(ValueError, match="not divisible"):
        PatchEmbed3D((2, 2, 2), 4, 8)(torch.randn(1, 4, 3, 4, 4))


def test_axis_embedding_adds_rows_from_an_offset():
    table = torch.arange(10.0)[:, None].expand(10, 3)
    temporal = AxisEmbedding(table, AttentionAxis.TEMPORAL)
    out = temporal(torch.zeros(1, 4, 2, 3), offset=5)
    assert out[0, :, 1, 0].tolist() == [5.0, 6.0, 7.0, 8.0]
    spatial = AxisEmbedding(table, AttentionAxis.SPATIAL)
    assert spatial(torch.zeros(1, 2, 3, 3))[0, 1, :, 2].tolist() == [0.0, 1.0, 2.0]
    with pytest.raises(ValueError, match="exceed the table of 10 positions"):
        temporal(torch.zeros(1, 4, 2, 3), offset=8)


def test_final_layer_modulates_then_projects():
    torch.manual_seed(0)
    layer = FinalLayer(6, 4)
    x, cond = torch.randn(2, 1, 3, 6), torch.randn(2, 6)
    shift = (layer.scale_shift_table[0] + cond)[:, None, None]
    scale = (layer.scale_shift_table[1] + cond)[:, None, None]
    expected = layer.linear(F.layer_norm(x, (6,), eps=1e-6) * (1 + scale) + shift)
    torch.testing.assert_close(layer(x, cond), expected)
    with pytest.raises(ValueError, match="unknown modulation 'film'"):
        FinalLayer(6, 4, modulation="film")


def test_final_layer_with_a_narrower_condition_and_an_affine_norm():
    torch.manual_seed(0)
    layer = FinalLayer(6, 4, "linear", cond_dim=5, elementwise_affine=True)
    torch.nn.init.normal_(layer.norm.weight)
    torch.nn.init.normal_(layer.norm.bias)
    x, cond = torch.randn(2, 1, 3, 6), torch.randn(2, 5)
    shift, scale = (F.silu(cond) @ layer.adaLN_modulation[1].weight.T + layer.adaLN_modulation[1].bias).chunk(2, -1)
    normed = F.layer_norm(x, (6,), layer.norm.weight, layer.norm.bias, eps=1e-6)
    expected = layer.linear(normed * (1 + scale[:, None, None]) + shift[:, None, None])
    torch.testing.assert_close(layer(x, cond), expected)
    with pytest.raises(ValueError, match="conditioning of width 6, not 5"):
        FinalLayer(6, 4, cond_dim=5)


def test_split_modulation_shapes_and_errors():
    shift, scale = split_modulation(torch.arange(12.0).reshape(2, 6), 2)
    assert shift.shape == (2, 1, 1, 3) and scale[1].flatten().tolist() == [9.0, 10.0, 11.0]
    with pytest.raises(ValueError, match="does not split into 4"):
        split_modulation(torch.zeros(2, 6), 4)


def test_label_embedder_null_class_and_errors():
    embed = LabelEmbedder(10, 4)
    assert embed.null_class == 10 and embed(torch.tensor([10, 3])).shape == (2, 4)
    with pytest.raises(ValueError, match=r"0\.\.10, got \[11\]"):
        embed(torch.tensor([11]))
    with pytest.raises(TypeError, match="integers"):
        embed(torch.tensor([1.0]))
    with pytest.raises(ValueError, match="without a null class"):
        _ = LabelEmbedder(10, 4, with_null_class=False).null_class
