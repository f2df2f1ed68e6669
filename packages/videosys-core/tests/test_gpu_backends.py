"""CUDA paths, run by ``nox -s gpu`` on a machine with a GPU."""

import pytest
import torch

from videosys.core import SelfAttention, scaled_dot_product
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
