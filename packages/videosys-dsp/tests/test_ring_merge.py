"""The log-sum-exp merge behind ring attention, in one process: blocks of keys merged equal softmax over all."""

import pytest
import torch

from videosys.core import attention_with_lse
from videosys.dsp import merge_partials


def float64_attention(q, k, v, key_mask):
    """softmax(q k^T / sqrt(D)) v over all keys, written out in float64."""
    scores = torch.einsum("nqhd,nkhd->nhqk", q.double(), k.double()) * q.shape[-1] ** -0.5
    scores = scores.masked_fill(~key_mask[:, None, None, :], float("-inf"))
    return torch.einsum("nhqk,nkhd->nqhd", torch.softmax(scores, dim=-1), v.double())


@pytest.mark.parametrize("backend", ["sdpa", "math"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_merged_blocks_equal_softmax_over_concatenated_keys(backend, dtype):
    g = torch.Generator().manual_seed(0)
    n, heads, dim, blocks, length = 3, 2, 8, 3, 4
    q = torch.randn(n, 5, heads, dim, generator=g) * 40  # logits in the hundreds: exp would overflow unmerged
    k, v = (torch.randn(n, blocks * length, heads, dim, generator=g) for _ in range(2))
    key_mask = torch.rand(n, blocks * length, generator=g) > 0.3
    key_mask[0, :length] = False  # sample 0 sees no key in the first block
    key_mask[1] = False
    key_mask[1, -1] = True  # sample 1 sees one key, in the last block
    q, k, v = (t.to(dtype) for t in (q, k, v))
    acc = torch.float32
    out = torch.zeros(n, 5, heads, dim, dtype=acc)
    lse = torch.full((n, heads, 5), float("-inf"), dtype=acc)
    for b in range(blocks):
        part = slice(b * length, (b + 1) * length)
        block_out, block_lse = attention_with_lse(q, k[:, part], v[:, part], key_mask[:, part], backend=backend)
        out, lse = merge_partials(out, lse, block_out.to(acc), block_lse)
    expected = float64_attention(q, k, v, key_mask)
    atol = 1e-5 if dtype is torch.float32 else 1e-2
    torch.testing.assert_close(out.double(), expected, rtol=0, atol=atol * expected.abs().max().item())
    assert torch.isfinite(lse).all()


def test_rows_without_any_key_stay_zero_and_minus_inf():
    out = torch.randn(1, 2, 1, 4)
    minus_inf = torch.full((1, 1, 2), float("-inf"))
    merged, lse = merge_partials(torch.zeros_like(out), minus_inf, torch.zeros_like(out), minus_inf)
    assert torch.equal(merged, torch.zeros_like(out)) and torch.equal(lse, minus_inf)
    merged, lse = merge_partials(torch.zeros_like(out), minus_inf, out, torch.tensor([[[1.5, -2.0]]]))
    assert torch.equal(merged, out) and torch.equal(lse, torch.tensor([[[1.5, -2.0]]]))
