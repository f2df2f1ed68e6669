"""Each attention axis mixes exactly the tokens it declares, forward and backward."""

import math

import pytest
import torch

from videosys.core import AttentionAxis, CrossAttention, SelfAttention


def softmax_attention(q, k, v, key_mask=None):
    """Plain attention on (L, H, D) tensors for one sequence, written out independently."""
    scores = torch.einsum("qhd,khd->hqk", q, k) / math.sqrt(q.shape[-1])
    if key_mask is not None:
        scores = scores.masked_fill(~key_mask[None, None, :], float("-inf"))
    return torch.einsum("hqk,khd->qhd", scores.softmax(-1), v)


def by_hand(attn: SelfAttention, x: torch.Tensor) -> torch.Tensor:
    """Attention computed sequence by sequence with explicit loops over the other axes."""
    b, t, s, c = x.shape
    h, d = attn.num_heads, c // attn.num_heads
    q = attn.to_q(x).reshape(b, t, s, h, d)
    k = attn.to_k(x).reshape(b, t, s, h, d)
    v = attn.to_v(x).reshape(b, t, s, h, d)
    out = torch.zeros(b, t, s, h, d)
    for i in range(b):
        if attn.axis is AttentionAxis.SPATIAL:
            for f in range(t):
                out[i, f] = softmax_attention(q[i, f], k[i, f], v[i, f])
        elif attn.axis is AttentionAxis.TEMPORAL:
            for p in range(s):
                out[i, :, p] = softmax_attention(q[i, :, p], k[i, :, p], v[i, :, p])
        else:
            flat = softmax_attention(q[i].reshape(t * s, h, d), k[i].reshape(t * s, h, d), v[i].reshape(t * s, h, d))
            out[i] = flat.reshape(t, s, h, d)
    return attn.to_out(out.reshape(b, t, s, c))


@pytest.mark.parametrize("axis", ["spatial", "temporal", "full"])
def test_self_attention_matches_per_sequence_loops(axis):
    torch.manual_seed(0)
    attn = SelfAttention(16, 4, axis)
    x = torch.randn(2, 3, 5, 16, requires_grad=True)
    x_ref = x.detach().clone().requires_grad_(True)
    out, ref = attn(x), by_hand(attn, x_ref)
    torch.testing.assert_close(out, ref, atol=1e-6, rtol=1e-5)
    grad = torch.randn_like(out)
    out.backward(grad)
    weight_grad = attn.to_q.weight.grad.clone()
    attn.zero_grad()
    ref.backward(grad)
    torch.testing.assert_close(x.grad, x_ref.grad, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(weight_grad, attn.to_q.weight.grad, atol=1e-6, rtol=1e-5)


def test_spatial_attention_never_mixes_frames():
    torch.manual_seed(0)
    attn = SelfAttention(8, 2, "spatial")
    x = torch.randn(1, 4, 6, 8)
    changed = x.clone()
    changed[:, 2] += 1.0
    diff = (attn(x) - attn(changed)).abs().sum(dim=(0, 2, 3))
    assert diff[2] > 0 and torch.all(diff[[0, 1, 3]] == 0)


def test_cross_attention_ignores_token_layout():
    torch.manual_seed(0)
    attn = CrossAttention(16, 4, context_dim=12)
    x = torch.randn(2, 3, 5, 16)
    context = torch.randn(2, 7, 12)
    mask = torch.tensor([[True] * 7, [True] * 4 + [False] * 3])
    out = attn(x, context, mask)
    regrouped = attn(x.reshape(2, 5, 3, 16), context, mask).reshape(2, 3, 5, 16)
    torch.testing.assert_close(out, regrouped, atol=1e-6, rtol=1e-5)
    # the masked text tokens of sample 1 have no influence
    noisy = context.clone()
    noisy[1, 4:] = torch.randn(3, 12)
    torch.testing.assert_close(attn(x, noisy, mask)[1], out[1], atol=1e-6, rtol=1e-5)
    # each token's output equals attention of that token alone (queries are independent)
    q = attn.to_q(x[0, 1, 2]).reshape(1, 4, 4)
    k = attn.to_k(context[0]).reshape(7, 4, 4)
    v = attn.to_v(context[0]).reshape(7, 4, 4)
    expected = attn.to_out(softmax_attention(q, k, v).reshape(16))
    torch.testing.assert_close(out[0, 1, 2], expected, atol=1e-6, rtol=1e-5)


def test_self_attention_mask_excludes_keys():
    torch.manual_seed(0)
    attn = SelfAttention(8, 2, "temporal")
    x = torch.randn(1, 4, 3, 8)
    frame_mask = torch.tensor([True, True, True, False]).reshape(1, 4, 1)
    out = attn(x, mask=frame_mask)
    torch.testing.assert_close(out[:, :3], attn(x[:, :3])[:, :3], atol=1e-6, rtol=1e-5)


def test_attention_errors_name_the_bad_value():
    with pytest.raises(ValueError, match="width 10 does not split into 4"):
        SelfAttention(10, 4, "spatial")
    with pytest.raises(ValueError, match="use CrossAttention"):
        SelfAttention(8, 2, "cross")
    with pytest.raises(ValueError, match="unknown attention axis 'sideways'"):
        SelfAttention(8, 2, "sideways")
    attn = SelfAttention(8, 2, "spatial")
    with pytest.raises(ValueError, match="has 6 channels.*expected 8"):
        attn(torch.zeros(1, 2, 3, 6))
    with pytest.raises(ValueError, match=r"\(B, T, S, C\)"):
        attn(torch.zeros(2, 3, 8))
    cross = CrossAttention(8, 2, context_dim=4)
    with pytest.raises(ValueError, match=r"context must be \(B=1, L, 4\)"):
        cross(torch.zeros(1, 2, 3, 8), torch.zeros(1, 5, 8))
