"""Attention modules that declare their axis, and the residual branch that holds them.

A :class:`VideoAttention` is split into three overridable stages so wrappers can act between them:
``project`` (token-wise q/k/v), ``mix`` (the only step that mixes tokens, along ``axis``) and ``output``
(token-wise projection). Sequence parallelism rewires ``mix`` or the whole module; attention caching
wraps the :class:`Branch` around it.
"""

from __future__ import annotations

import torch
from torch import nn

from .attention import scaled_dot_product
from .layers.modulation import modulate
from .layers.norm import NormKind, make_norm
from .layers.rope import Rotary
from .layout import AttentionAxis, VideoGrid, check_video_tokens, from_sequences, to_sequences

__all__ = ["Branch", "CrossAttention", "CrossAttentionBase", "SelfAttention", "VideoAttention"]


def _heads(dim: int, num_heads: int) -> int:
    if num_heads < 1 or dim % num_heads:
        raise ValueError(f"width {dim} does not split into {num_heads} attention heads")
    return dim // num_heads


class VideoAttention(nn.Module):
    """Self-attention over one :class:`AttentionAxis` of ``(B, T, S, C)`` tokens.

    Subclasses implement :meth:`project` and :meth:`output`; the default :meth:`mix` folds the tokens
    into one sequence per independent attention, applies ``self.rope`` if set (:meth:`rotate`), and calls
    :func:`~videosys.core.attention.scaled_dot_product`.
    """

    axis: AttentionAxis
    num_heads: int
    rope: nn.Module | None
    scale: float | None

    def __init__(self, axis: AttentionAxis | str, num_heads: int) -> None:
        super().__init__()
        axis = AttentionAxis.parse(axis)
        if axis is AttentionAxis.CROSS:
            raise ValueError("a VideoAttention mixes x's own tokens; use CrossAttention for axis 'cross'")
        self.axis = axis
        self.num_heads = num_heads
        # Instance attributes, not class defaults: a class-level None would shadow a registered submodule.
        self.rope = None
        self.scale = None

    def project(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Token-wise q, k, v, each ``(B, T, S, H, D)``."""
        raise NotImplementedError

    def output(self, o: torch.Tensor) -> torch.Tensor:
        """Token-wise map of ``(B, T, S, H, D)`` attention output back to ``(B, T, S, C)``."""
        raise NotImplementedError

    def rotate(
        self, q: torch.Tensor, k: torch.Tensor, grid: VideoGrid | None = None, start: tuple[int, int] = (0, 0)
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``q`` and ``k`` rotated by ``self.rope`` (unchanged without one).

        Token-wise given positions: ``start`` (frame, spatial token) is where their first token sits in
        ``grid``, so sequence parallelism rotates a shard of the tokens (ring attention) by its global place.
        """
        if self.rope is None:
            return q, k
        return self.rope(q, self.axis, grid, start), self.rope(k, self.axis, grid, start)

    def mix(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        mask: torch.Tensor | None = None,
        grid: VideoGrid | None = None,
    ) -> torch.Tensor:
        """Attention along ``self.axis``; ``mask`` is boolean, broadcastable to ``(B, T, S)``, True = attend.

        The attended axes are whole here, so ``grid`` (the video's, see :class:`VideoGrid`) must match them.
        """
        b, t, s = q.shape[:3]
        if grid is not None:
            grid.check(self.axis, t, s)
        q, k = self.rotate(q, k, grid)
        key_mask = None
        if mask is not None:
            key_mask = to_sequences(mask.expand(b, t, s), self.axis)
        out = scaled_dot_product(
            to_sequences(q, self.axis),
            to_sequences(k, self.axis),
            to_sequences(v, self.axis),
            key_mask,
            scale=self.scale,
        )
        return from_sequences(out, self.axis, b, t, s)

    def forward(
        self, x: torch.Tensor, *, mask: torch.Tensor | None = None, grid: VideoGrid | None = None
    ) -> torch.Tensor:
        """``grid``: the whole video's token grid, needed by a :class:`~videosys.core.layers.GridRotaryEmbedding`."""
        check_video_tokens(x)
        return self.output(self.mix(*self.project(x), mask=mask, grid=grid))


class SelfAttention(VideoAttention):
    """Multi-head self-attention with ``to_q``/``to_k``/``to_v``/``to_out`` projections (diffusers' names).

    ``qk_norm`` normalises queries and keys over the head dim (``"rms"`` as in STDiT3, ``"layer"``);
    ``rope`` rotates them by position: along the axis (:class:`~videosys.core.layers.RotaryEmbedding`) or in
    the video grid (:class:`~videosys.core.layers.GridRotaryEmbedding`).
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        axis: AttentionAxis | str,
        *,
        qkv_bias: bool = True,
        out_bias: bool = True,
        qk_norm: NormKind | None = None,
        qk_norm_eps: float = 1e-6,
        rope: Rotary | None = None,
    ) -> None:
        super().__init__(axis, num_heads)
        self.dim = dim
        self.head_dim = _heads(dim, num_heads)
        self.to_q = nn.Linear(dim, dim, bias=qkv_bias)
        self.to_k = nn.Linear(dim, dim, bias=qkv_bias)
        self.to_v = nn.Linear(dim, dim, bias=qkv_bias)
        self.to_out = nn.Linear(dim, dim, bias=out_bias)
        self.q_norm = make_norm(qk_norm, self.head_dim, eps=qk_norm_eps) if qk_norm else nn.Identity()
        self.k_norm = make_norm(qk_norm, self.head_dim, eps=qk_norm_eps) if qk_norm else nn.Identity()
        self.rope = rope

    def project(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        check_video_tokens(x, channels=self.dim)
        split = (*x.shape[:3], self.num_heads, self.head_dim)
        q = self.q_norm(self.to_q(x).reshape(split))
        k = self.k_norm(self.to_k(x).reshape(split))
        return q, k, self.to_v(x).reshape(split)

    def output(self, o: torch.Tensor) -> torch.Tensor:
        return self.to_out(o.flatten(-2))


class CrossAttentionBase(nn.Module):
    """Every token queries an external context (text tokens); ``x``'s layout does not matter.

    ``forward(x, context, context_mask)`` with ``x: (B, T, S, C)``, ``context: (B, L, Cc)`` and an
    optional boolean ``context_mask: (B, L)`` (True = a real token). Subclasses hold the parameters and
    implement :meth:`project` and :meth:`output`.
    """

    axis = AttentionAxis.CROSS

    def __init__(self, dim: int, num_heads: int, context_dim: int | None = None) -> None:
        super().__init__()
        self.dim = dim
        self.num_heads = num_heads
        self.head_dim = _heads(dim, num_heads)
        self.context_dim = dim if context_dim is None else context_dim

    def project(
        self, x: torch.Tensor, context: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:  # pragma: no cover - abstract
        """q ``(B, T*S, H, D)`` from the tokens ``(B, T*S, C)``; k, v ``(B, L, H, D)`` from the context."""
        raise NotImplementedError

    def output(self, o: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        """``(B, T*S, C)`` attention output to ``(B, T*S, C)``."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor, context: torch.Tensor, context_mask: torch.Tensor | None = None) -> torch.Tensor:
        b, t, s, _ = check_video_tokens(x, channels=self.dim)
        if context.dim() != 3 or context.shape[0] != b or context.shape[2] != self.context_dim:
            raise ValueError(f"context must be (B={b}, L, {self.context_dim}), got shape {tuple(context.shape)}")
        q, k, v = self.project(x.reshape(b, t * s, -1), context)
        out = scaled_dot_product(q, k, v, context_mask)
        return self.output(out.flatten(-2)).reshape(b, t, s, -1)


class CrossAttention(CrossAttentionBase):
    """Cross-attention with ``to_q``/``to_k``/``to_v``/``to_out`` projections (diffusers' names)."""

    def __init__(
        self, dim: int, num_heads: int, context_dim: int | None = None, *, qkv_bias: bool = True, out_bias: bool = True
    ) -> None:
        super().__init__(dim, num_heads, context_dim)
        self.to_q = nn.Linear(dim, dim, bias=qkv_bias)
        self.to_k = nn.Linear(self.context_dim, dim, bias=qkv_bias)
        self.to_v = nn.Linear(self.context_dim, dim, bias=qkv_bias)
        self.to_out = nn.Linear(dim, dim, bias=out_bias)

    def project(self, x: torch.Tensor, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        heads = (self.num_heads, self.head_dim)
        return (
            self.to_q(x).unflatten(-1, heads),
            self.to_k(context).unflatten(-1, heads),
            self.to_v(context).unflatten(-1, heads),
        )

    def output(self, o: torch.Tensor) -> torch.Tensor:
        return self.to_out(o)


class Branch(nn.Module):
    """One residual sublayer of a block: ``gate * inner(modulate(norm(x), shift, scale), ...)``.

    The block adds the returned value to its residual stream. ``norm`` may be None (a branch without
    pre-norm, like PixArt's cross-attention); ``shift``/``scale``/``gate`` may be None (no adaLN).
    Its :attr:`axis` is the inner attention's axis, or None for a token-wise inner module (an MLP).
    Wrappers act on a whole branch: its output is what attention caching reuses.
    """

    def __init__(self, inner: nn.Module, norm: nn.Module | None = None) -> None:
        super().__init__()
        self.norm = norm
        self.inner = inner

    @property
    def axis(self) -> AttentionAxis | None:
        axis = getattr(self.inner, "axis", None)
        return axis if isinstance(axis, AttentionAxis) else None

    def forward(
        self,
        x: torch.Tensor,
        *inner_args: object,
        shift: torch.Tensor | None = None,
        scale: torch.Tensor | None = None,
        gate: torch.Tensor | None = None,
        **inner_kwargs: object,
    ) -> torch.Tensor:
        h = self.norm(x) if self.norm is not None else x
        h = self.inner(modulate(h, shift, scale), *inner_args, **inner_kwargs)
        return h if gate is None else gate * h
