import pytest
import torch

from videosys.core import AttentionBackendUnavailable, attention_backend, scaled_dot_product
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
