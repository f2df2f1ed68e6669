"""The adaLN-zero block against the DiT equations written with plain tensor ops."""

import math

import pytest
import torch
import torch.nn.functional as F

from videosys.core import AdaLNBlock, Conditioning


def attention(x, attn, context=None, mask=None):
    """Multi-head attention over (N, L, C) sequences with the module's weights."""
    source = x if context is None else context
    n, lq, c = x.shape
    h = attn.num_heads
    q = F.linear(x, attn.to_q.weight, attn.to_q.bias).reshape(n, lq, h, -1).transpose(1, 2)
    k = F.linear(source, attn.to_k.weight, attn.to_k.bias).reshape(n, source.shape[1], h, -1).transpose(1, 2)
    v = F.linear(source, attn.to_v.weight, attn.to_v.bias).reshape(n, source.shape[1], h, -1).transpose(1, 2)
    scores = q @ k.transpose(-1, -2) / math.sqrt(c // h)
    if mask is not None:
        scores = scores.masked_fill(~mask[:, None, None, :], float("-inf"))
    out = (scores.softmax(-1) @ v).transpose(1, 2).reshape(n, lq, c)
    return F.linear(out, attn.to_out.weight, attn.to_out.bias)


@pytest.mark.parametrize("modulation", ["table", "linear"])
def test_spatial_block_follows_the_adaln_zero_equations(modulation):
    torch.manual_seed(0)
    dim, b, t, s = 8, 2, 3, 4
    block = AdaLNBlock(dim, 2, "spatial", cross_attention=True, context_dim=6, modulation=modulation)
    x = torch.randn(b, t, s, dim)
    cond_width = 6 * dim if modulation == "table" else dim
    cond = Conditioning(
        modulation=torch.randn(b, cond_width),
        context=torch.randn(b, 5, 6),
        context_mask=torch.tensor([[True] * 5, [True, True, True, False, False]]),
    )
    if modulation == "table":
        params = block.scale_shift_table[None] + cond.modulation.reshape(b, 6, dim)
    else:
        params = F.linear(F.silu(cond.modulation), block.adaLN_modulation[1].weight, block.adaLN_modulation[1].bias)
        params = params.reshape(b, 6, dim)
    shift1, scale1, gate1, shift2, scale2, gate2 = (params[:, i][:, None, None] for i in range(6))

    h = F.layer_norm(x, (dim,), eps=1e-6) * (1 + scale1) + shift1
    frames = h.reshape(b * t, s, dim)
    expected = x + gate1 * attention(frames, block.attn.inner).reshape(b, t, s, dim)
    tokens = expected.reshape(b, t * s, dim)
    expected = expected + attention(tokens, block.cross.inner, cond.context, cond.context_mask).reshape(b, t, s, dim)
    h = F.layer_norm(expected, (dim,), eps=1e-6) * (1 + scale2) + shift2
    mlp = block.mlp.inner
    expected = expected + gate2 * F.linear(
        F.gelu(F.linear(h, mlp.fc1.weight, mlp.fc1.bias), approximate="tanh"), mlp.fc2.weight, mlp.fc2.bias
    )
    torch.testing.assert_close(block(x, cond), expected, atol=1e-5, rtol=1e-5)


def test_block_without_modulation_input_says_so():
    block = AdaLNBlock(8, 2, "temporal")
    with pytest.raises(ValueError, match="needs cond.modulation"):
        block(torch.randn(1, 2, 3, 8), Conditioning())
    with pytest.raises(ValueError, match="unknown modulation 'film'"):
        AdaLNBlock(8, 2, "temporal", modulation="film")


def test_attention_mask_hides_keys_from_the_blocks_self_attention():
    """A full-attention block with cond.attention_mask hiding the last frame gives the other frames what the block
    gives a video without that frame (every op but attention is token-wise); without the mask they differ."""
    torch.manual_seed(0)
    block = AdaLNBlock(8, 2, "full", cross_attention=True, context_dim=6)
    x = torch.randn(2, 3, 4, 8)
    cond = Conditioning(modulation=torch.randn(2, 48), context=torch.randn(2, 5, 6))
    mask = torch.tensor([True, True, False]).reshape(1, 3, 1)
    masked = block(x, Conditioning(**{**vars(cond), "attention_mask": mask}))
    shorter = block(x[:, :2], cond)
    torch.testing.assert_close(masked[:, :2], shorter, atol=1e-6, rtol=1e-5)
    assert not torch.allclose(block(x, cond)[:, :2], shorter, atol=1e-3)
