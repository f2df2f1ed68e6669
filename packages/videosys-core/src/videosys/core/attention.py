"""Attention kernels behind one function, :func:`scaled_dot_product`.

Every VideoSys attention computes through this function, so a backend is chosen in one place:
PyTorch's SDPA everywhere, flash-attn when it is installed and the tensors are half-precision CUDA
tensors, and a plain softmax ``math`` reference used by tests. :func:`attention_backend` forces one.
:func:`attention_with_lse` also returns each row's log-sum-exp, so that attention over blocks of keys
computed apart (ring attention) can be merged exactly.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import math
from collections.abc import Callable, Iterator
from typing import Literal

import torch
import torch.nn.functional as F

__all__ = [
    "AttentionBackendUnavailable",
    "BACKENDS",
    "Backend",
    "accumulation_dtype",
    "attention_backend",
    "attention_with_lse",
    "available_backends",
    "resolve_backend",
    "scaled_dot_product",
]

Backend = Literal["auto", "sdpa", "flash", "math"]
BACKENDS: tuple[str, ...] = ("auto", "sdpa", "flash", "math")

_forced_backend: contextvars.ContextVar[str] = contextvars.ContextVar("videosys_attention_backend", default="auto")


class AttentionBackendUnavailable(RuntimeError):
    """A backend was forced that cannot run these tensors (or is not installed)."""


@functools.cache
def _flash_attn_func() -> Callable | None:
    """flash-attn's kernel, imported on first use; None when the package is not installed."""
    try:
        from flash_attn import flash_attn_func
    except ImportError:
        return None
    return flash_attn_func


def _flash_unsupported_reason(q: torch.Tensor, mask: torch.Tensor | None) -> str | None:
    if _flash_attn_func() is None:
        return "flash-attn is not installed (pip install 'videosys-core[flash]' on a CUDA machine)"
    if not q.is_cuda:
        return f"flash-attn needs CUDA tensors, got device {q.device}"
    if q.dtype not in (torch.float16, torch.bfloat16):
        return f"flash-attn needs float16 or bfloat16 tensors, got {q.dtype}"
    if mask is not None:
        return "flash-attn is used here without masks; a mask was given"
    return None


def available_backends() -> list[str]:
    """Backends importable in this environment (``flash`` still needs half-precision CUDA tensors)."""
    return ["sdpa", "math"] + (["flash"] if _flash_attn_func() is not None else [])


@contextlib.contextmanager
def attention_backend(name: Backend) -> Iterator[None]:
    """Force ``name`` for every :func:`scaled_dot_product` call inside the block (``"auto"`` restores choice)."""
    if name not in BACKENDS:
        raise ValueError(f"unknown attention backend {name!r}; expected one of {', '.join(BACKENDS)}")
    token = _forced_backend.set(name)
    try:
        yield
    finally:
        _forced_backend.reset(token)


def resolve_backend(q: torch.Tensor, mask: torch.Tensor | None = None, backend: Backend | None = None) -> str:
    """The backend that will run these inputs: the argument, else the forced one, else the best available."""
    name = backend or _forced_backend.get()
    if name not in BACKENDS:
        raise ValueError(f"unknown attention backend {name!r}; expected one of {', '.join(BACKENDS)}")
    if name == "auto":
        return "flash" if _flash_unsupported_reason(q, mask) is None else "sdpa"
    if name == "flash":
        reason = _flash_unsupported_reason(q, mask)
        if reason is not None:
            raise AttentionBackendUnavailable(f"attention backend 'flash' was forced but cannot run: {reason}")
    return name


def _key_mask_to_bias(mask: torch.Tensor, batch: int, q_len: int, k_len: int) -> torch.Tensor:
    """A boolean key mask (True = attend), ``(N, Lk)`` or ``(N, Lq, Lk)``, as a ``(N, 1, Lq|1, Lk)`` mask."""
    if mask.dtype != torch.bool:
        raise TypeError(f"attention mask must be boolean (True = attend), got dtype {mask.dtype}")
    if mask.dim() == 2 and mask.shape == (batch, k_len):
        return mask[:, None, None, :]
    if mask.dim() == 3 and mask.shape == (batch, q_len, k_len):
        return mask[:, None, :, :]
    raise ValueError(
        f"attention mask of shape {tuple(mask.shape)} does not fit: expected ({batch}, {k_len}) for a key mask "
        f"or ({batch}, {q_len}, {k_len}) for a full mask"
    )


def _math_attention(q, k, v, mask, scale):
    """Reference: softmax(q k^T * scale) v, in the inputs' (N, H, L, D) layout."""
    scores = torch.matmul(q, k.transpose(-1, -2)) * scale
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return torch.matmul(torch.softmax(scores, dim=-1), v)


def _check_qkv(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> None:
    if q.dim() != 4 or k.dim() != 4 or v.dim() != 4:
        raise ValueError(
            f"q, k, v must be (N, L, H, D); got shapes {tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}"
        )
    n, _, heads, dim = q.shape
    if k.shape[0] != n or k.shape[2:] != (heads, dim) or v.shape[:3] != k.shape[:3]:
        raise ValueError(
            f"q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)} disagree: expected k and v to be "
            f"(N={n}, Lk, H={heads}, D) with the same Lk, and k to share q's head dim {dim}"
        )


def scaled_dot_product(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None = None,
    *,
    scale: float | None = None,
    backend: Backend | None = None,
) -> torch.Tensor:
    """Multi-head attention on ``(N, L, H, D)`` tensors (flash-attn's layout); returns ``(N, Lq, H, D)``.

    ``mask`` is boolean, True where a query may attend: ``(N, Lk)`` masks keys, ``(N, Lq, Lk)`` pairs.
    ``scale`` defaults to ``1/sqrt(D)``. ``backend`` overrides :func:`attention_backend` for this call.
    """
    _check_qkv(q, k, v)
    n, q_len, _, dim = q.shape
    scale = 1.0 / math.sqrt(dim) if scale is None else scale
    name = resolve_backend(q, mask, backend)
    if name == "flash":
        return _flash_attn_func()(q, k, v, softmax_scale=scale)
    bias = None if mask is None else _key_mask_to_bias(mask, n, q_len, k.shape[1])
    qt, kt, vt = (t.transpose(1, 2) for t in (q, k, v))
    if name == "math":
        out = _math_attention(qt, kt, vt, bias, scale)
    else:
        out = F.scaled_dot_product_attention(qt, kt, vt, attn_mask=bias, scale=scale)
    return out.transpose(1, 2)


def accumulation_dtype(dtype: torch.dtype) -> torch.dtype:
    """float32 for half-precision and float32 inputs, float64 for float64: where softmax statistics are kept."""
    return torch.promote_types(dtype, torch.float32)


def _math_attention_lse(q, k, v, mask, scale):
    """Reference with log-sum-exp, in (at least) float32, (N, H, L, D) layout; rows without keys give -inf and 0."""
    acc = accumulation_dtype(q.dtype)
    scores = torch.matmul(q.to(acc), k.to(acc).transpose(-1, -2)) * scale
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    lse = torch.logsumexp(scores, dim=-1)
    weights = torch.exp(scores - lse.masked_fill(lse == float("-inf"), 0.0).unsqueeze(-1))
    return torch.matmul(weights, v.to(acc)).to(q.dtype), lse


def _sdpa_lse(q, k, v, mask, scale):
    """PyTorch's fused kernels that also return the log-sum-exp (private ATen ops: SDPA exposes no LSE)."""
    bias = None
    if mask is not None:  # these kernels take an additive bias of q's dtype, not a boolean mask
        bias = torch.zeros(mask.shape, dtype=q.dtype, device=q.device).masked_fill(~mask, -math.inf)
    aten = torch.ops.aten
    if q.is_cuda:
        out, lse = aten._scaled_dot_product_efficient_attention(q, k, v, bias, True, 0.0, False, scale=scale)[:2]
        return out, lse[..., : q.shape[2]]  # the kernel pads the LSE's rows
    return aten._scaled_dot_product_flash_attention_for_cpu(q, k, v, 0.0, False, attn_mask=bias, scale=scale)


def attention_with_lse(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None = None,
    *,
    scale: float | None = None,
    backend: Backend | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`scaled_dot_product` plus the log-sum-exp of each query's scaled scores: ``(out, lse)``.

    ``out`` is ``(N, Lq, H, D)`` in q's dtype, ``lse`` is ``(N, H, Lq)`` in :func:`accumulation_dtype`.
    A query whose keys are all masked gets ``out = 0`` and ``lse = -inf`` on every backend, so partial
    results over blocks of keys merge exactly (a block where a query sees no key weighs nothing).
    """
    _check_qkv(q, k, v)
    n, q_len, _, dim = q.shape
    scale = 1.0 / math.sqrt(dim) if scale is None else scale
    name = resolve_backend(q, mask, backend)
    if name == "flash":
        out, lse, _ = _flash_attn_func()(q, k, v, softmax_scale=scale, return_attn_probs=True)
        return out, lse.to(accumulation_dtype(q.dtype))
    bias = None if mask is None else _key_mask_to_bias(mask, n, q_len, k.shape[1])
    qt, kt, vt = (t.transpose(1, 2) for t in (q, k, v))
    out, lse = (_math_attention_lse if name == "math" else _sdpa_lse)(qt, kt, vt, bias, scale)
    lse = lse.to(accumulation_dtype(q.dtype))
    if bias is not None:
        empty = ~bias.any(dim=-1)  # (N, 1, Lq or 1): no key to attend to
        lse = lse.masked_fill(empty, float("-inf"))
        out = out.masked_fill(empty.unsqueeze(-1), 0.0)
    return out.transpose(1, 2), lse
