"""Joint attention: the video tokens and a second token stream (text) attend together in one sequence.

CogVideoX and MMDiT models (Open-Sora 2.0, HunyuanVideo, SD3) do not cross-attend to a fixed text
encoding: they concatenate the text tokens with the video tokens, attend over both at once, and carry the
updated text from block to block. A :class:`JointAttention` is a ``FULL`` :class:`VideoAttention` whose stages
take and return both streams; a :class:`JointBranch` is the residual branch around it (or around a
token-wise module applied to each stream) and returns both streams' updates. The stream itself travels as
``cond.context`` from one :class:`~videosys.core.JointBlock` to the next.

Under sequence parallelism the video tokens are sharded and the text stream is whole on every rank;
attention caching reuses both streams' updates together.
"""

from __future__ import annotations

import torch
from torch import nn

from .attention import scaled_dot_product
from .layers.modulation import modulate
from .layers.norm import NormKind, make_norm
from .layers.rope import Rotary
from .layout import AttentionAxis, VideoGrid, check_video_tokens
from .modules import Branch, VideoAttention

__all__ = ["JointAttention", "JointBranch", "JointSelfAttention", "check_context_tokens"]

QKV = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def check_context_tokens(context: torch.Tensor, batch: int, channels: int | None = None) -> int:
    """Validate a second token stream ``(B, L, C)`` beside video tokens of batch ``batch``; returns ``L``."""
    if context.dim() != 3 or context.shape[0] != batch or (channels is not None and context.shape[2] != channels):
        want = f"(B={batch}, L, {'C' if channels is None else channels})"
        raise ValueError(f"the context stream must be {want}, got shape {tuple(context.shape)}")
    return context.shape[1]


class JointAttention(VideoAttention):
    """Self-attention over the text stream and all video tokens together (axis ``FULL``).

    Stages, each overridable like :class:`VideoAttention`'s:

    - :meth:`project` ``(x, context)``: video q, k, v ``(B, T, S, H, D)`` and text q, k, v ``(B, L, H, D)``;
    - :meth:`mix`: attention over the joint sequence (text first, as CogVideoX lays it out), video queries
      and keys rotated by ``self.rope`` with the video grid; returns both outputs;
    - :meth:`output` ``(o, context_o)``: ``(B, T, S, C)`` and ``(B, L, C)``.
    """

    def __init__(self, num_heads: int) -> None:
        super().__init__(AttentionAxis.FULL, num_heads)

    def project(self, x: torch.Tensor, context: torch.Tensor) -> tuple[QKV, QKV]:  # type: ignore[override]
        raise NotImplementedError

    def output(self, o: torch.Tensor, context_o: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # type: ignore[override]
        raise NotImplementedError

    def mix(  # type: ignore[override]
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        context_q: torch.Tensor,
        context_k: torch.Tensor,
        context_v: torch.Tensor,
        mask: torch.Tensor | None = None,
        context_mask: torch.Tensor | None = None,
        grid: VideoGrid | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Attention over ``[text; video]``; ``mask`` (video, broadcastable to ``(B, T, S)``) and ``context_mask``
        (``(B, L)``) are boolean key masks, True = attend. Every query, text or video, sees every unmasked key."""
        b, t, s = q.shape[:3]
        length = context_q.shape[1]
        if grid is not None:
            grid.check(self.axis, t, s)
        q, k = self.rotate(q, k, grid)
        key_mask = None
        if mask is not None or context_mask is not None:
            video_mask = q.new_ones(b, t, s, dtype=torch.bool) if mask is None else mask.expand(b, t, s)
            text_mask = q.new_ones(b, length, dtype=torch.bool) if context_mask is None else context_mask
            key_mask = torch.cat([text_mask, video_mask.reshape(b, t * s)], dim=1)
        joint = [
            torch.cat([text, video.flatten(1, 2)], dim=1)
            for text, video in ((context_q, q), (context_k, k), (context_v, v))
        ]
        out = scaled_dot_product(*joint, key_mask, scale=self.scale)
        return out[:, length:].unflatten(1, (t, s)), out[:, :length]

    def forward(  # type: ignore[override]
        self,
        x: torch.Tensor,
        context: torch.Tensor,
        *,
        mask: torch.Tensor | None = None,
        context_mask: torch.Tensor | None = None,
        grid: VideoGrid | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        b = check_video_tokens(x)[0]
        check_context_tokens(context, b)
        video, text = self.project(x, context)
        return self.output(*self.mix(*video, *text, mask=mask, context_mask=context_mask, grid=grid))


class JointSelfAttention(JointAttention):
    """Joint attention with one set of ``to_q``/``to_k``/``to_v``/``to_out`` projections for both streams.

    CogVideoX's layout (diffusers' names): text and video tokens are projected by the same weights, ``qk_norm``
    normalises queries and keys over the head dim, ``rope`` rotates the video's only.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        *,
        qkv_bias: bool = True,
        out_bias: bool = True,
        qk_norm: NormKind | None = None,
        qk_norm_eps: float = 1e-6,
        rope: Rotary | None = None,
    ) -> None:
        super().__init__(num_heads)
        if num_heads < 1 or dim % num_heads:
            raise ValueError(f"width {dim} does not split into {num_heads} attention heads")
        self.dim = dim
        self.head_dim = dim // num_heads
        self.to_q = nn.Linear(dim, dim, bias=qkv_bias)
        self.to_k = nn.Linear(dim, dim, bias=qkv_bias)
        self.to_v = nn.Linear(dim, dim, bias=qkv_bias)
        self.to_out = nn.Linear(dim, dim, bias=out_bias)
        self.norm_q = make_norm(qk_norm, self.head_dim, eps=qk_norm_eps) if qk_norm else nn.Identity()
        self.norm_k = make_norm(qk_norm, self.head_dim, eps=qk_norm_eps) if qk_norm else nn.Identity()
        self.rope = rope

    def _qkv(self, tokens: torch.Tensor) -> QKV:
        heads = (self.num_heads, self.head_dim)
        q = self.norm_q(self.to_q(tokens).unflatten(-1, heads))
        k = self.norm_k(self.to_k(tokens).unflatten(-1, heads))
        return q, k, self.to_v(tokens).unflatten(-1, heads)

    def project(self, x: torch.Tensor, context: torch.Tensor) -> tuple[QKV, QKV]:  # type: ignore[override]
        check_video_tokens(x, channels=self.dim)
        check_context_tokens(context, x.shape[0], self.dim)
        return self._qkv(x), self._qkv(context)

    def output(self, o: torch.Tensor, context_o: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # type: ignore[override]
        return self.to_out(o.flatten(-2)), self.to_out(context_o.flatten(-2))


class JointBranch(Branch):
    """A residual branch over both streams: ``(gate * inner(...)_video, context_gate * inner(...)_context)``.

    ``inner`` is a :class:`JointAttention` (which mixes the streams) or a token-wise module run on each
    stream (an MLP, as CogVideoX's feed-forward over the concatenated tokens). ``norm`` normalises both
    streams unless ``context_norm`` is given for the text; each stream has its own shift/scale/gate.
    """

    def __init__(self, inner: nn.Module, norm: nn.Module | None = None, context_norm: nn.Module | None = None) -> None:
        super().__init__(inner, norm)
        self.context_norm = context_norm

    def forward(  # type: ignore[override]
        self,
        x: torch.Tensor,
        context: torch.Tensor,
        *,
        shift: torch.Tensor | None = None,
        scale: torch.Tensor | None = None,
        gate: torch.Tensor | None = None,
        context_shift: torch.Tensor | None = None,
        context_scale: torch.Tensor | None = None,
        context_gate: torch.Tensor | None = None,
        **inner_kwargs: object,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        context_norm = self.context_norm if self.context_norm is not None else self.norm
        h = modulate(self.norm(x) if self.norm is not None else x, shift, scale)
        hc = modulate(context_norm(context) if context_norm is not None else context, context_shift, context_scale)
        if isinstance(self.inner, JointAttention):
            h, hc = self.inner(h, hc, **inner_kwargs)
        else:
            h, hc = self.inner(h, **inner_kwargs), self.inner(hc, **inner_kwargs)
        return (h if gate is None else gate * h), (hc if context_gate is None else context_gate * hc)
