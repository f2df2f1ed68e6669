import pytest
import torch

from videosys.core import AttentionBackendUnavailable, attention_backend, attention_with_lse, scaled_dot_product
from videosys.core.attention import resolve_backend


def qkv(n=3, lq=7, lk=5, h=2, d=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (
        torch.randn(n, lq, h, d, generator=g),
        torch.randn(n, lk, h, d, generator=g),
        torch.randn(n, lk, h, d, generator=g),
    )


@pytest.mark.parametrize("mask_kind", [None, "keys", "pairs"])
def test_sdpa_and_math_agree(mask_kind):
    q, k, v = qkv()
    mask = None
    if mask_kind == "keys":
        mask = torch.tensor([[True] * 5, [True, True, False, True, False], [False, True, True, True, True]])
    elif mask_kind == "pairs":
        mask = torch.rand(3, 7, 5, generator=torch.Generator().manual_seed(1)) > 0.3
        mask[..., 0] = True  # keep every row attending to something
    sdpa = scaled_dot_product(q, k, v, mask, backend="sdpa")
    with attention_backend("math"):
        reference = scaled_dot_product(q, k, v, mask)
    torch.testing.assert_close(sdpa, reference, atol=1e-6, rtol=1e-6)


def test_custom_scale_is_applied():
    q, k, v = qkv()
    expected = scaled_dot_product(q * 0.5 * 8**0.5, k, v, backend="math")
    torch.testing.assert_close(scaled_dot_product(q, k, v, scale=0.5, backend="sdpa"), expected, atol=1e-6, rtol=1e-6)


def test_auto_picks_sdpa_on_cpu_and_forced_flash_explains_why_not():
    q, k, v = qkv()
    assert resolve_backend(q) == "sdpa"
    with pytest.raises(AttentionBackendUnavailable, match="'flash' was forced"):
        scaled_dot_product(q, k, v, backend="flash")
    with attention_backend("flash"), pytest.raises(AttentionBackendUnavailable):
        scaled_dot_product(q, k, v)


def test_bad_backend_and_shapes_raise_clear_errors():
    q, k, v = qkv()
    with pytest.raises(ValueError, match="unknown attention backend 'cudnn'"):
        with attention_backend("cudnn"):
            pass
    with pytest.raises(ValueError, match=r"\(N, L, H, D\)"):
        scaled_dot_product(q[0], k, v)
    with pytest.raises(ValueError, match="disagree"):
        scaled_dot_product(q, k[..., :4], v)
    with pytest.raises(ValueError, match=r"expected \(3, 5\) for a key mask"):
        scaled_dot_product(q, k, v, torch.ones(3, 7, dtype=torch.bool))
    with pytest.raises(TypeError, match="boolean"):
        scaled_dot_product(q, k, v, torch.ones(3, 5))


def _reference_lse(q, k, v, mask, scale):
    """softmax and logsumexp written out in float64, independent of the backends."""
    scores = torch.einsum("nqhd,nkhd->nhqk", q.double(), k.double()) * scale
    if mask is not None:
        keep = mask[:, None, None, :] if mask.dim() == 2 else mask[:, None]
        scores = scores.masked_fill(~keep, float("-inf"))
    lse = torch.logsumexp(scores, dim=-1)
    out = torch.einsum("nhqk,nkhd->nqhd", torch.softmax(scores, dim=-1), v.double())
    return out, lse


@pytest.mark.parametrize("backend", ["sdpa", "math"])
@pytest.mark.parametrize("mask_kind", [None, "keys", "pairs"])
def test_attention_with_lse_matches_float64_reference(backend, mask_kind):
    q, k, v = qkv()
    q = q * 30  # large logits: a naive exp would overflow
    mask = None
    if mask_kind == "keys":
        mask = torch.tensor([[True] * 5, [True, True, False, True, False], [False, True, True, True, True]])
    elif mask_kind == "pairs":
        mask = torch.rand(3, 7, 5, generator=torch.Generator().manual_seed(1)) > 0.3
        mask[..., 0] = True
    out, lse = attention_with_lse(q, k, v, mask, scale=0.7, backend=backend)
    expected_out, expected_lse = _reference_lse(q, k, v, mask, 0.7)
    assert lse.dtype == torch.float32 and lse.shape == (3, 2, 7)
    torch.testing.assert_close(lse.double(), expected_lse, atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(out.double(), expected_out, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("backend", ["sdpa", "math"])
def test_attention_with_lse_rows_without_keys_are_zero_and_minus_inf(backend):
    q, k, v = qkv()
    mask = torch.ones(3, 7, 5, dtype=torch.bool)
    mask[0] = False  # a whole sequence without keys
    mask[1, 2] = False  # one query row without keys
    out, lse = attention_with_lse(q, k, v, mask, backend=backend)
    assert torch.equal(out[0], torch.zeros_like(out[0])) and torch.equal(out[1, 2], torch.zeros_like(out[1, 2]))
    assert (lse[0] == float("-inf")).all() and (lse[1, :, 2] == float("-inf")).all()
    assert torch.isfinite(lse[1, :, :2]).all() and torch.isfinite(lse[2]).all()
    expected_out, _ = _reference_lse(q[2:], k[2:], v[2:], None, 8**-0.5)
    torch.testing.assert_close(out[2:].double(), expected_out, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_attention_with_lse_in_half_precision(dtype):
    q, k, v = (t.to(dtype) for t in qkv())
    for backend in ("sdpa", "math"):
        out, lse = attention_with_lse(q, k, v, backend=backend)
        expected_out, expected_lse = _reference_lse(q, k, v, None, 8**-0.5)
        assert out.dtype == dtype and lse.dtype == torch.float32
        torch.testing.assert_close(lse.double(), expected_lse, atol=1e-3, rtol=1e-3)
        torch.testing.assert_close(out.double(), expected_out, atol=2e-2, rtol=2e-2)
