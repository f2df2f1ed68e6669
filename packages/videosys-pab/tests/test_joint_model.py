"""A user's joint text-video model (written here from core's joint classes): PAB reuses both streams' updates."""

from collections import Counter

import torch
from pab_tiny import named_branches, record_inner_calls, reuse_schedule, substitute, user_loop
from torch import nn

from videosys.core import Conditioning, JointBlock, JointBranch, JointSelfAttention, STBackbone
from videosys.core.layers import FeedForward
from videosys.pab import Broadcast, MLPReuse, PABConfig, pab, stats

DIM = 12


class UserJointBlock(JointBlock):
    """Joint attention gated per stream by the conditioning, then a feed-forward over both streams."""

    def __init__(self) -> None:
        super().__init__()
        self.attn = JointBranch(JointSelfAttention(DIM, 2, qk_norm="layer"), nn.LayerNorm(DIM))
        self.mlp = JointBranch(FeedForward(DIM, 2 * DIM), nn.LayerNorm(DIM))

    def forward(self, x: torch.Tensor, cond: Conditioning) -> tuple[torch.Tensor, torch.Tensor]:
        gate = cond.modulation
        dx, dc = self.attn(x, cond.context, gate=gate[:, None, None], context_gate=gate[:, None])
        x, context = x + dx, cond.context + dc
        dx, dc = self.mlp(x, context)
        return x + dx, context + dc


class UserJointModel(STBackbone):
    def __init__(self) -> None:
        super().__init__()
        self.proj_in, self.text_in, self.t_proj = nn.Linear(3, DIM), nn.Linear(6, DIM), nn.Linear(1, DIM)
        self.blocks = nn.ModuleList(UserJointBlock() for _ in range(3))
        self.proj_out = nn.Linear(DIM, 3)

    def embed(self, x: torch.Tensor, t: torch.Tensor, text: torch.Tensor):
        gate = torch.tanh(self.t_proj(t[:, None] / 1000))
        return self.proj_in(x), Conditioning(modulation=gate, context=self.text_in(text))

    def head(self, x: torch.Tensor, cond: Conditioning) -> torch.Tensor:
        return self.proj_out(x)


TIMESTEPS = [1000.0 - 50.0 * i for i in range(20)]
CONFIG = PABConfig(
    full=Broadcast(3, window=(0.2, 0.8), unit="fraction"),  # steps 4..15, computing on 6, 9, 12, 15
    mlp=MLPReuse(layers=[1], at=[4], steps=3),  # second block's MLP: kept at step 4, reused on 5, 6, 7
)
REUSED = {"attn": [4, 5, 7, 8, 10, 11, 13, 14], "mlp": [5, 6, 7]}


is_reused = reuse_schedule(REUSED, mlp_block=1)


def run(model):
    return user_loop(model, TIMESTEPS)


def user_model():
    torch.manual_seed(0)
    return UserJointModel().eval()


branches = named_branches


def test_joint_model_reuses_both_streams_on_the_hand_written_schedule():
    model = user_model()
    calls = record_inner_calls(branches(model))
    with pab(model, CONFIG):
        out = run(model)
        counts = stats(model)
    expected = Counter({(i, key): 1 for i in range(20) for key in branches(model) if not is_reused(key, i)})
    # A token-wise joint branch runs its module once per stream.
    expected.update({(i, key): 1 for i, key in list(expected) if key[1] == "mlp"})
    assert calls == expected
    assert counts == {"full": {"computed": 3 * 12, "reused": 3 * 8}, "mlp": {"computed": 3 * 20 - 3, "reused": 3}}
    # The reference replaces each reused branch's (video, text) pair by the one its last computed call returned.
    reference = user_model()
    substitute(branches(reference), is_reused)
    assert torch.equal(out, run(reference))


def test_joint_model_with_interval_one_is_unchanged():
    model = user_model()
    expected = run(model)
    with pab(model, PABConfig(full=Broadcast(1))):
        assert torch.equal(run(model), expected)
