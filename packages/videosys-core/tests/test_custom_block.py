"""A user's own block and backbone, written only from the core base classes."""

import pytest
import torch
from torch import nn

from videosys.core import (
    AttentionAxis,
    Branch,
    Conditioning,
    CrossAttention,
    InterfaceError,
    SelfAttention,
    STBackbone,
    STBlock,
    branch_sites,
    check_backbone,
)
from videosys.core.layers import FeedForward


class UserBlock(STBlock):  # the "~20 lines" a user writes
    def __init__(self, dim: int, heads: int, axis: str, text_dim: int | None = None) -> None:
        super().__init__()
        self.attn = Branch(SelfAttention(dim, heads, axis), nn.LayerNorm(dim))
        if text_dim is not None:
            self.cross = Branch(CrossAttention(dim, heads, text_dim), nn.LayerNorm(dim))
        self.mlp = Branch(FeedForward(dim, 2 * dim), nn.LayerNorm(dim))

    def forward(self, x: torch.Tensor, cond: Conditioning) -> torch.Tensor:
        scale = cond.modulation[:, None, None, :]
        x = x + self.attn(x, scale=scale)
        if self.cross is not None:
            x = x + self.cross(x, cond.context)
        return x + self.mlp(x)


class UserModel(STBackbone):
    def __init__(self, dim: int = 16) -> None:
        super().__init__()
        self.proj_in = nn.Linear(3, dim)
        self.blocks = nn.ModuleList(
            [UserBlock(dim, 2, "spatial", 8), UserBlock(dim, 2, "temporal"), UserBlock(dim, 2, "spatial")]
        )
        self.proj_out = nn.Linear(dim, 3)

    def embed(self, video: torch.Tensor, t: torch.Tensor, text: torch.Tensor):
        return self.proj_in(video), Conditioning(
            modulation=t[:, None].expand(-1, self.proj_in.out_features), context=text
        )

    def head(self, x, cond):
        return self.proj_out(x)


def test_user_model_runs_and_is_recognised():
    model = UserModel()
    check_backbone(model)
    out = model(torch.randn(2, 4, 6, 3), torch.rand(2), torch.randn(2, 5, 8))
    assert out.shape == (2, 4, 6, 3)
    sites = [(s.block, s.layer, s.block_axis, s.name, s.branch.axis) for s in branch_sites(model)]
    S, T, X = AttentionAxis.SPATIAL, AttentionAxis.TEMPORAL, AttentionAxis.CROSS
    assert sites == [
        (0, 0, S, "attn", S), (0, 0, S, "cross", X), (0, 0, S, "mlp", None),
        (1, 0, T, "attn", T), (1, 0, T, "mlp", None),
        (2, 1, S, "attn", S), (2, 1, S, "mlp", None),
    ]  # fmt: skip


def test_user_model_gradients_reach_every_parameter():
    model = UserModel()
    model(torch.randn(1, 2, 3, 3), torch.rand(1), torch.randn(1, 4, 8)).square().sum().backward()
    missing = [name for name, p in model.named_parameters() if p.grad is None]
    assert missing == []


class NotABlock(nn.Module):
    def forward(self, x, cond):
        return x


def test_interface_check_names_what_is_wrong():
    with pytest.raises(InterfaceError, match="Linear is not a videosys.core.STBackbone"):
        check_backbone(nn.Linear(2, 2))
    model = UserModel()
    model.blocks[1] = NotABlock()
    with pytest.raises(InterfaceError, match=r"blocks\[1\] \(NotABlock\) is not a videosys.core.STBlock"):
        check_backbone(model)
    model = UserModel()
    model.blocks[0].attn = Branch(FeedForward(16, 16))
    with pytest.raises(InterfaceError, match=r"blocks\[0\].*attn must be a Branch around a VideoAttention"):
        check_backbone(model)
    model = UserModel()
    model.blocks[2].mlp = Branch(SelfAttention(16, 2, "full"))
    with pytest.raises(InterfaceError, match=r"blocks\[2\].*mlp must be a Branch around a token-wise module"):
        check_backbone(model)
    empty = UserModel()
    empty.blocks = nn.ModuleList()
    with pytest.raises(InterfaceError, match="non-empty nn.ModuleList"):
        check_backbone(empty)


def test_gradient_checkpointing_gives_the_same_output_and_gradients():
    torch.manual_seed(0)
    model = UserModel().train()
    inputs = (torch.randn(2, 3, 4, 3), torch.rand(2), torch.randn(2, 5, 8))
    model(*inputs).square().sum().backward()
    plain = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    model.gradient_checkpointing = True
    model(*inputs).square().sum().backward()
    for name, p in model.named_parameters():
        torch.testing.assert_close(p.grad, plain[name], atol=1e-6, rtol=1e-5)
