"""A user's own model, written in this file from the core base classes only, gets PAB unchanged."""

from collections import Counter

import torch
from pab_tiny import named_branches, record_inner_calls, reuse_schedule, substitute, user_loop
from torch import nn

from videosys.core import Branch, Conditioning, CrossAttention, SelfAttention, STBackbone, STBlock
from videosys.core.layers import FeedForward
from videosys.pab import Broadcast, MLPReuse, PABConfig, pab, stats


class UserBlock(STBlock):
    """Full 3-D attention gated by the conditioning, cross-attention without a norm, a plain MLP."""

    def __init__(self, dim: int, heads: int, text_dim: int) -> None:
        super().__init__()
        self.attn = Branch(SelfAttention(dim, heads, "full", qk_norm="rms"), nn.LayerNorm(dim))
        self.cross = Branch(CrossAttention(dim, heads, text_dim))
        self.mlp = Branch(FeedForward(dim, 2 * dim), nn.LayerNorm(dim))

    def forward(self, x: torch.Tensor, cond: Conditioning) -> torch.Tensor:
        x = x + self.attn(x, gate=cond.modulation[:, None, None, :])
        x = x + self.cross(x, cond.context)
        return x + self.mlp(x)


class UserModel(STBackbone):
    def __init__(self, dim: int = 16) -> None:
        super().__init__()
        self.proj_in = nn.Linear(3, dim)
        self.t_proj = nn.Linear(1, dim)
        self.blocks = nn.ModuleList(UserBlock(dim, 2, 6) for _ in range(3))
        self.proj_out = nn.Linear(dim, 3)

    def embed(self, x: torch.Tensor, t: torch.Tensor, text: torch.Tensor):
        return self.proj_in(x), Conditioning(modulation=torch.tanh(self.t_proj(t[:, None] / 1000)), context=text)

    def head(self, x: torch.Tensor, cond: Conditioning) -> torch.Tensor:
        return self.proj_out(x)


TIMESTEPS = [1000.0 - 50.0 * i for i in range(20)]  # 1000, 950, ..., 50
CONFIG = PABConfig(
    full=Broadcast(3, window=(0.2, 0.8), unit="fraction"),  # 0.2 <= i / 20 < 0.8: steps 4..15
    cross=Broadcast(5, window=(200, 900)),  # 200 < 1000 - 50 i < 900: steps 3..15
    mlp=MLPReuse(layers=[1], at=[4], steps=3),  # second block's MLP: kept at step 4, reused on 5, 6, 7
)
REUSED = {
    "attn": [4, 5, 7, 8, 10, 11, 13, 14],  # steps 4..15 but 6, 9, 12, 15
    "cross": [3, 4, 6, 7, 8, 9, 11, 12, 13, 14],  # steps 3..15 but 5, 10, 15
    "mlp": [5, 6, 7],
}


is_reused = reuse_schedule(REUSED, mlp_block=1)


def run(model):
    return user_loop(model, TIMESTEPS)


def user_model():
    torch.manual_seed(0)
    return UserModel().eval()


branches = named_branches


def test_user_model_follows_the_hand_written_schedule():
    model = user_model()
    calls = record_inner_calls(branches(model))
    with pab(model, CONFIG):
        out = run(model)
        counts = stats(model)
    expected = Counter({(i, key): 1 for i in range(20) for key in branches(model) if not is_reused(key, i)})
    assert calls == expected
    assert counts == {
        "full": {"computed": 3 * (20 - 8), "reused": 3 * 8},
        "cross": {"computed": 3 * (20 - 10), "reused": 3 * 10},
        "mlp": {"computed": 3 * 20 - 3, "reused": 3},
    }
    reference = user_model()
    substitute(branches(reference), is_reused)
    assert torch.equal(out, run(reference))


def test_user_model_with_interval_one_is_unchanged():
    model = user_model()
    expected = run(model)
    with pab(model, PABConfig(full=Broadcast(1), cross=Broadcast(1))):
        assert torch.equal(run(model), expected)
