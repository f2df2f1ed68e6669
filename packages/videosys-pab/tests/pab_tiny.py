"""Test helpers: a tiny spatial-temporal DiT on the core interfaces, a sampling loop, two schedules."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Hashable

import torch
from torch import nn

from videosys.core import AdaLNBlock, Conditioning, STBackbone, VideoGrid, current_step, denoising_step
from videosys.core.layers import FinalLayer, GridRotaryEmbedding, TimestepEmbedder

DIM, HEADS, TEXT_DIM, IN_CH = 16, 2, 8, 3
FRAMES, TOKENS, TEXT_LEN = 3, 5, 4


def ddim_50() -> list[float]:
    """DDIM-like 50-step schedule on 0..1000: 980, 960, ..., 0."""
    return [980.0 - 20.0 * i for i in range(50)]


def linear_30() -> list[float]:
    """30 evenly spaced timesteps 1000, 966.7, ..., 33.3."""
    return [1000.0 - i * 100.0 / 3.0 for i in range(30)]


class TinyVideoDiT(STBackbone):
    """Alternating spatial / temporal adaLN blocks, each with cross-attention (STDiT3's layout).

    ``rows``: full / spatial pairs instead, rotating queries and keys by their place in the video grid
    (3-D RoPE with its own channel split, 2-D RoPE over rows and columns); each frame's tokens are ``rows`` rows.
    """

    def __init__(self, depth: int = 2, rows: int | None = None) -> None:
        super().__init__()
        self.proj_in = nn.Linear(IN_CH, DIM)
        self.t_embed = TimestepEmbedder(DIM, frequency_dim=32)
        self.t_block = nn.Sequential(nn.SiLU(), nn.Linear(DIM, 6 * DIM))
        cross = {"cross_attention": True, "context_dim": TEXT_DIM}
        if rows is None:
            layers = [AdaLNBlock(DIM, HEADS, axis, **cross) for _ in range(depth) for axis in ("spatial", "temporal")]
        else:
            rope_3d = GridRotaryEmbedding(DIM // HEADS, split=(2, 2, 4), interpolation_scale=(1.0, 0.5, 2.0))
            rope_2d = GridRotaryEmbedding(DIM // HEADS, "hw")
            layers = [
                AdaLNBlock(DIM, HEADS, axis, rope=rope, **cross)
                for _ in range(depth)
                for axis, rope in (("full", rope_3d), ("spatial", rope_2d))
            ]
        self.blocks = nn.ModuleList(layers)
        self.rows = rows
        self.final = FinalLayer(DIM, IN_CH)

    def embed(self, x: torch.Tensor, t: torch.Tensor, text: torch.Tensor):
        emb = self.t_embed(t)
        grid = None if self.rows is None else VideoGrid(x.shape[1], self.rows, x.shape[2] // self.rows)
        return self.proj_in(x), Conditioning(modulation=self.t_block(emb), context=text, extras={"t": emb}, grid=grid)

    def head(self, x: torch.Tensor, cond: Conditioning) -> torch.Tensor:
        return self.final(x, cond.extras["t"])


def inputs(seed: int = 0, batch: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Starting noise ``(B, T, S, C)`` and text tokens ``(B, L, Ct)`` from ``seed``."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, FRAMES, TOKENS, IN_CH, generator=g), torch.randn(batch, TEXT_LEN, TEXT_DIM, generator=g)


@torch.no_grad()
def sample(
    model: nn.Module,
    timesteps: list[float],
    seed: int = 0,
    batch: int = 1,
    guidance: str | None = None,
    start: int = 0,
    stop: int | None = None,
    given: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """Euler steps ``start..stop-1`` of the loop over ``timesteps`` (indices keep their place in the loop).

    ``guidance``: None, ``"batched"`` (conditional and unconditional halves in one call, as the
    pipelines do) or ``"separate"`` (two calls per step). ``given``: inputs instead of ``seed``/``batch``.
    """
    x, text = given if given is not None else inputs(seed, batch)
    batch = x.shape[0]
    null = torch.zeros_like(text)
    n = len(timesteps)
    for i in range(start, n if stop is None else stop):
        t = timesteps[i]
        t_next = timesteps[i + 1] if i + 1 < n else 0.0
        with denoising_step(i, t, n):
            if guidance is None:
                v = model(x, torch.full((batch,), t), text)
            elif guidance == "batched":
                v_c, v_u = model(torch.cat([x, x]), torch.full((2 * batch,), t), torch.cat([text, null])).chunk(2)
                v = v_u + 4.0 * (v_c - v_u)
            else:
                v_c = model(x, torch.full((batch,), t), text)
                v_u = model(x, torch.full((batch,), t), null)
                v = v_u + 4.0 * (v_c - v_u)
        x = x + (t_next - t) / 1000.0 * v
    return x


def tiny_model(seed: int = 0, depth: int = 2, rows: int | None = None) -> TinyVideoDiT:
    torch.manual_seed(seed)
    return TinyVideoDiT(depth, rows).eval()


def record_inner_calls(branches: dict) -> Counter:
    """Count the calls that actually ran each branch's inner module, keyed ``(step index, branch key)``."""
    calls: Counter = Counter()
    for key, branch in branches.items():
        branch.inner.register_forward_hook(lambda m, a, o, key=key: calls.update([(current_step().index, key)]))
    return calls


def substitute(branches: dict, is_reused: Callable[[Hashable, int], bool]) -> None:
    """A reference PAB made of forward hooks on an unwrapped model: every branch computes, and on the
    steps ``is_reused(key, step)`` names, its output is replaced by the one saved at the same call
    position on the last step it was kept."""
    for key, branch in branches.items():
        memo = {"step": None, "position": 0, "saved": {}}

        def hook(module, args, output, key=key, memo=memo):
            step = current_step()
            memo["position"] = memo["position"] + 1 if step == memo["step"] else 0
            memo["step"] = step
            if is_reused(key, step.index):
                return memo["saved"][memo["position"]]
            memo["saved"][memo["position"]] = output
            return output

        branch.register_forward_hook(hook)


@torch.no_grad()
def user_loop(model: nn.Module, timesteps: list[float]) -> torch.Tensor:
    """A plain Euler loop over ``timesteps`` for the user models written in the tests (3 channels, text width 6)."""
    g = torch.Generator().manual_seed(0)
    x, text = torch.randn(2, 2, 3, 3, generator=g), torch.randn(2, 4, 6, generator=g)
    for i, t in enumerate(timesteps):
        with denoising_step(i, t, len(timesteps)):
            x = x - 0.05 * model(x, torch.full((2,), t), text)
    return x


def named_branches(model: nn.Module) -> dict:
    """Every branch of ``model`` keyed ``(block index, branch name)``."""
    return {(b, name): branch for b, block in enumerate(model.blocks) for name, branch in block.branches().items()}


def reuse_schedule(reused: dict[str, list[int]], mlp_block: int) -> Callable[[Hashable, int], bool]:
    """``is_reused((block, name), step)`` for :func:`substitute`: ``reused[name]`` lists the steps, MLP reuse
    applies to block ``mlp_block`` only."""

    def is_reused(key: Hashable, step: int) -> bool:
        block, name = key
        return (name != "mlp" or block == mlp_block) and step in reused[name]

    return is_reused
