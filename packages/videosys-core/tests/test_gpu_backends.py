"""CUDA paths, run by ``nox -s gpu`` on a machine with a GPU."""

import pytest
import torch

from videosys.core import SelfAttention, attention_with_lse, scaled_dot_product
from videosys.core.attention import available_backends, resolve_backend

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_flash_matches_sdpa_in_half_precision(dtype):
    if "flash" not in available_backends():
        pytest.skip("flash-attn is not installed")
    q, k, v = (torch.randn(2, 64, 4, 32, device="cuda", dtype=dtype) for _ in range(3))
    assert resolve_backend(q) == "flash"
    flash = scaled_dot_product(q, k, v, backend="flash")
    sdpa = scaled_dot_product(q, k, v, backend="sdpa")
    torch.testing.assert_close(flash.float(), sdpa.float(), atol=2e-2, rtol=2e-2)


def test_attention_module_on_cuda_matches_cpu():
    torch.manual_seed(0)
    attn = SelfAttention(64, 4, "temporal")
    x = torch.randn(2, 8, 16, 64)
    expected = attn(x)
    torch.testing.assert_close(attn.cuda()(x.cuda()).cpu(), expected, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("backend", ["sdpa", "flash"])
def test_attention_with_lse_on_cuda_matches_math(backend):
    if backend == "flash" and "flash" not in available_backends():
        pytest.skip("flash-attn is not installed")
    q, k, v = (torch.randn(2, 40, 4, 32, device="cuda", dtype=torch.bfloat16) for _ in range(3))
    out, lse = attention_with_lse(q, k, v, backend=backend)
    expected_out, expected_lse = attention_with_lse(q, k, v, backend="math")
    torch.testing.assert_close(lse, expected_lse, atol=1e-2, rtol=1e-2)
    torch.testing.assert_close(out.float(), expected_out.float(), atol=2e-2, rtol=2e-2)
    if backend == "sdpa":
        mask = torch.rand(2, 40, device="cuda") > 0.3
        mask[1] = False
        out, lse = attention_with_lse(q, k, v, mask, backend=backend)
        expected_out, expected_lse = attention_with_lse(q, k, v, mask, backend="math")
        torch.testing.assert_close(lse, expected_lse, atol=1e-2, rtol=1e-2)
        torch.testing.assert_close(out.float(), expected_out.float(), atol=2e-2, rtol=2e-2)
