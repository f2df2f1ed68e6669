"""Joint text-video attention: one softmax over [text; video], both streams updated and carried block to block."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from videosys.core import (
    Branch,
    Conditioning,
    InterfaceError,
    JointBlock,
    JointBranch,
    JointSelfAttention,
    STBackbone,
    VideoGrid,
    check_backbone,
)
from videosys.core.layers import FeedForward, GridRotaryEmbedding

DIM, HEADS = 12, 2


class TwoStreamBlock(JointBlock):
    """A CogVideoX-like block written here: one modulation layer gives both streams' shift/scale/gate."""

    def __init__(self, rope: GridRotaryEmbedding | None = None) -> None:
        super().__init__()
        norm = nn.LayerNorm(DIM, elementwise_affine=False)
        self.attn = JointBranch(JointSelfAttention(DIM, HEADS, qk_norm="layer", rope=rope), norm)
        self.mlp = JointBranch(FeedForward(DIM, 2 * DIM), nn.LayerNorm(DIM))
        self.modulation = nn.Linear(DIM, 12 * DIM)

    def forward(self, x: torch.Tensor, cond: Conditioning) -> tuple[torch.Tensor, torch.Tensor]:
        params = self.modulation(cond.modulation).chunk(12, dim=-1)
        video = [p[:, None, None] for p in params[:6]]
        text = [p[:, None] for p in params[6:]]
        for branch, (vs, vsc, vg), (ts, tsc, tg) in (
            (self.attn, video[:3], text[:3]),
            (self.mlp, video[3:], text[3:]),
        ):
            dx, dc = branch(
                x,
                cond.context,
                shift=vs,
                scale=vsc,
                gate=vg,
                context_shift=ts,
                context_scale=tsc,
                context_gate=tg,
                **({"grid": cond.grid, "context_mask": cond.context_mask} if branch is self.attn else {}),
            )
            x, cond = x + dx, dataclasses.replace(cond, context=cond.context + dc)
        return x, cond.context


class TwoStreamModel(STBackbone):
    def __init__(self, depth: int = 2, rows: int = 2) -> None:
        super().__init__()
        rope = GridRotaryEmbedding(DIM // HEADS, split=(2, 2, 2))
        self.blocks = nn.ModuleList(TwoStreamBlock(rope) for _ in range(depth))
        self.rows = rows

    def embed(self, x: torch.Tensor, t: torch.Tensor, text: torch.Tensor, text_mask: torch.Tensor | None = None):
        grid = VideoGrid(x.shape[1], self.rows, x.shape[2] // self.rows)
        return x, Conditioning(modulation=t, context=text, context_mask=text_mask, grid=grid)

    def head(self, x: torch.Tensor, cond: Conditioning) -> torch.Tensor:
        return x


def reference_joint_attention(attn: JointSelfAttention, x, context, context_mask, grid):
    """The same attention written out: concatenate the tokens, project, one float64 softmax per head."""
    b, t, s, _ = x.shape
    length = context.shape[1]
    tokens = torch.cat([context, x.flatten(1, 2)], dim=1)
    heads = (HEADS, DIM // HEADS)
    q = attn.norm_q(attn.to_q(tokens).unflatten(-1, heads))
    k = attn.norm_k(attn.to_k(tokens).unflatten(-1, heads))
    v = attn.to_v(tokens).unflatten(-1, heads)
    video_q, video_k = (part[:, length:].unflatten(1, (t, s)) for part in (q, k))
    video_q, video_k = (attn.rope(part, attn.axis, grid) for part in (video_q, video_k))
    q = torch.cat([q[:, :length], video_q.flatten(1, 2)], dim=1).double()
    k = torch.cat([k[:, :length], video_k.flatten(1, 2)], dim=1).double()
    logits = torch.einsum("bqhd,bkhd->bhqk", q, k) / (DIM // HEADS) ** 0.5
    keep = torch.cat([context_mask, torch.ones(b, t * s, dtype=torch.bool)], dim=1)
    weights = logits.masked_fill(~keep[:, None, None], float("-inf")).softmax(-1)
    out = attn.to_out(torch.einsum("bhqk,bkhd->bqhd", weights, v.double()).float().flatten(-2))
    return out[:, length:].unflatten(1, (t, s)), out[:, :length]


def test_joint_attention_is_one_softmax_over_text_and_video():
    torch.manual_seed(0)
    attn = JointSelfAttention(DIM, HEADS, qk_norm="rms", rope=GridRotaryEmbedding(DIM // HEADS, split=(2, 2, 2)))
    x, context = torch.randn(2, 3, 6, DIM), torch.randn(2, 5, DIM)
    context_mask = torch.tensor([[True] * 5, [True, True, True, False, False]])
    grid = VideoGrid(3, 2, 3)
    got = attn(x, context, context_mask=context_mask, grid=grid)
    want = reference_joint_attention(attn, x, context, context_mask, grid)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-5)


def test_masked_text_tokens_change_nothing_but_their_own_rows():
    torch.manual_seed(1)
    attn = JointSelfAttention(DIM, HEADS)
    x, context = torch.randn(1, 2, 4, DIM), torch.randn(1, 4, DIM)
    mask = torch.tensor([[True, True, False, False]])
    changed = context.clone()
    changed[:, 2:] += 10.0
    video, text = attn(x, context, context_mask=mask)
    video2, text2 = attn(x, changed, context_mask=mask)
    torch.testing.assert_close(video, video2)
    torch.testing.assert_close(text[:, :2], text2[:, :2])
    assert not torch.allclose(text[:, 2:], text2[:, 2:])


def test_the_stream_is_carried_from_block_to_block():
    torch.manual_seed(2)
    model = TwoStreamModel(depth=3)
    x, t, text = torch.randn(2, 2, 4, DIM), torch.randn(2, DIM), torch.randn(2, 3, DIM)
    got = model(x, t, text)
    carried, context, frozen = x, text, x
    _, cond = model.embed(x, t, text)
    for block in model.blocks:
        carried, context = block(carried, dataclasses.replace(cond, context=context))
        frozen = block(frozen, cond)[0]
    torch.testing.assert_close(got, carried)
    assert not torch.allclose(got, frozen, atol=1e-3)  # every block fed the embedded text instead: another output


def test_token_wise_joint_branch_runs_its_module_on_each_stream():
    ff = FeedForward(DIM, 2 * DIM)
    branch = JointBranch(ff, nn.LayerNorm(DIM))
    x, context = torch.randn(1, 2, 3, DIM), torch.randn(1, 4, DIM)
    gate, context_gate = torch.rand(1, 1, 1, DIM), torch.rand(1, 1, DIM)
    dx, dc = branch(x, context, gate=gate, context_gate=context_gate)
    torch.testing.assert_close(dx, gate * ff(branch.norm(x)))
    torch.testing.assert_close(dc, context_gate * ff(branch.norm(context)))


def test_interface_errors_name_the_joint_rules():
    model = TwoStreamModel()
    check_backbone(model)
    model.blocks[0].attn = Branch(model.blocks[0].attn.inner)
    with pytest.raises(InterfaceError, match=r"blocks\[0\].*JointBlock's attn must be a JointBranch"):
        check_backbone(model)


def test_context_of_the_wrong_width_is_named():
    attn = JointSelfAttention(DIM, HEADS)
    with pytest.raises(ValueError, match=r"context stream must be \(B=1, L, 12\), got shape \(1, 4, 8\)"):
        attn(torch.randn(1, 2, 3, DIM), torch.randn(1, 4, 8))
