"""Spawn CPU ranks on gloo, and the tiny backbones the multi-rank tests compare against one process."""

from __future__ import annotations

import json
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from videosys.core import (
    AdaLNBlock,
    AttentionAxis,
    Branch,
    Conditioning,
    JointAttention,
    JointBlock,
    JointBranch,
    SelfAttention,
    STBackbone,
    STBlock,
    VideoGrid,
    attention_backend,
    token_field,
)
from videosys.core.layers import (
    AxisEmbedding,
    FeedForward,
    FinalLayer,
    GridRotaryEmbedding,
    RotaryEmbedding,
    TimestepEmbedder,
    split_modulation,
)
from videosys.dsp.testing import spawn

BACKENDS = ("sdpa", "math")
"""Attention backends every multi-rank check runs under on CPU: SDPA returns zeros for a query without keys,
the math reference NaN, so a padding row left without keys passes under one and fails under the other."""


class Check(NamedTuple):
    """One check a spawned rank runs: ``fn(*args)`` under each of ``backends`` (see :func:`run_checks`)."""

    name: str
    fn: Callable[..., None]
    args: tuple = ()
    backends: tuple[str, ...] = BACKENDS


def _runs(checks: list[Check]) -> list[tuple[str, Callable[..., None], tuple, str]]:
    return [(f"{c.name}[{backend}]", c.fn, c.args, backend) for c in checks for backend in c.backends]


def _run_logged(checks: list[Check], out_dir: Path) -> None:
    """Run every check on this rank, one JSON line per check in ``rank<r>.jsonl`` (a crash keeps what ran)."""
    with open(out_dir / f"rank{dist.get_rank()}.jsonl", "w") as log:
        for name, fn, args, backend in _runs(checks):
            try:
                with attention_backend(backend):
                    fn(*args)
            except BaseException:
                log.write(json.dumps({"check": name, "error": traceback.format_exc()}) + "\n")
                raise  # ends the spawn: the other ranks may be waiting in a collective
            log.write(json.dumps({"check": name, "error": None}) + "\n")
            log.flush()


def run_checks(world_size: int, checks: list[Check], out_dir: Path) -> dict[str, str | None]:
    """Run ``checks`` in order on ``world_size`` spawned gloo ranks (one spawn for all: starting ranks is slow).

    Each check runs once per backend in its ``backends``. Returns, per ``"name[backend]"``, None when it
    passed on every rank, else the failing rank's traceback (or a note that an earlier check's failure
    stopped the run).
    """
    try:
        spawn(_run_logged, world_size, checks, out_dir)
    except mp.ProcessRaisedException:
        pass  # the per-check logs below say which check failed and how
    passed: dict[str, int] = {}
    errors: dict[str, str] = {}
    for log in out_dir.glob("rank*.jsonl"):
        for line in log.read_text().splitlines():
            entry = json.loads(line)
            if entry["error"] is None:
                passed[entry["check"]] = passed.get(entry["check"], 0) + 1
            else:
                errors[entry["check"]] = f"{log.stem}: {entry['error']}"
    stopped = f"not run: stopped by the failure of {', '.join(errors) or 'a rank that crashed'}"
    results: dict[str, str | None] = {}
    for name, _, _, _ in _runs(checks):
        if name in errors:
            results[name] = errors[name]
        else:
            results[name] = None if passed.get(name) == world_size else stopped
    return results


class PositionedBlock(AdaLNBlock):
    """An adaLN block that first adds a position table along one axis (as Latte does before its temporal blocks)."""

    def __init__(self, dim: int, heads: int, axis: str, positions: int, **kwargs: object) -> None:
        super().__init__(dim, heads, axis, **kwargs)
        self.pos = AxisEmbedding(torch.randn(positions, dim), AttentionAxis.parse(axis))

    def forward(self, x: torch.Tensor, cond: Conditioning) -> torch.Tensor:
        return super().forward(self.pos(x), cond)


class MaskedBlock(AdaLNBlock):
    """An adaLN block whose self-attention takes the whole video's key mask from ``cond.extras["mask"]``."""

    def forward(self, x: torch.Tensor, cond: Conditioning) -> torch.Tensor:
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = self.modulation_params(cond)
        x = x + self.attn(x, shift=shift_msa, scale=scale_msa, gate=gate_msa, mask=cond.extras["mask"])
        return x + self.mlp(x, shift=shift_mlp, scale=scale_mlp, gate=gate_mlp)


class TinyVideoDiT(STBackbone):
    """STDiT-shaped: spatial (cross-attention, qk-norm) / temporal (RoPE) pairs, position tables on both axes.

    ``full=True`` gives full 3-D attention blocks instead; ``masked=True`` spatial, temporal and full
    blocks whose attention takes a key mask, passed to ``forward`` after the context; ``grid_rope=True``
    full attention with RoPE over ``(t, h, w)`` (Open-Sora-Plan v1.2's convention, with interpolation
    scales) and spatial attention with 2-D RoPE over ``(h, w)`` (a Wan-like split, interleaved pairs),
    the frames' ``S`` tokens being ``height`` rows (``forward``'s argument after the mask). Inputs are
    tokens ``(B, T, S, in_dim)``.
    """

    def __init__(
        self,
        dim: int = 32,
        heads: int = 4,
        in_dim: int = 4,
        context_dim: int = 8,
        max_len: int = 16,
        full: bool = False,
        masked: bool = False,
        grid_rope: bool = False,
    ) -> None:
        super().__init__()
        self.proj_in = nn.Linear(in_dim, dim)
        self.spatial_pos = AxisEmbedding(torch.randn(max_len, dim), AttentionAxis.SPATIAL)
        self.t_embedder = TimestepEmbedder(dim)
        self.t_block = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))
        cross = {"cross_attention": True, "context_dim": context_dim}
        if masked:
            blocks = [MaskedBlock(dim, heads, axis) for axis in ("spatial", "temporal", "full")]
        elif grid_rope:
            head_dim = dim // heads
            rope_3d = GridRotaryEmbedding(head_dim, interpolation_scale=(0.5, 1.5, 2.0))
            rope_2d = GridRotaryEmbedding(head_dim, "hw", (head_dim - 2 * (head_dim // 6), 2 * (head_dim // 6)))
            blocks = [
                AdaLNBlock(dim, heads, "full", rope=rope_3d, **cross),
                AdaLNBlock(dim, heads, "spatial", rope=rope_2d, qk_norm="rms"),
                AdaLNBlock(dim, heads, "full", rope=rope_3d, qk_norm="rms"),
            ]
        elif full:
            blocks = [AdaLNBlock(dim, heads, "full", **cross), AdaLNBlock(dim, heads, "full", qk_norm="rms")]
        else:
            rope = RotaryEmbedding(dim // heads)
            blocks = [
                AdaLNBlock(dim, heads, "spatial", qk_norm="rms", **cross),
                PositionedBlock(dim, heads, "temporal", max_len, rope=rope),
                PositionedBlock(dim, heads, "spatial", max_len, **cross),
                AdaLNBlock(dim, heads, "temporal", rope=rope),
            ]
        self.blocks = nn.ModuleList(blocks)
        self.final = FinalLayer(dim, in_dim)
        for param in self.parameters():  # adaLN-zero style zeros would hide wrong gradients: randomise all
            nn.init.normal_(param, std=0.2)

    def embed(
        self,
        tokens: torch.Tensor,
        t: torch.Tensor,
        context: torch.Tensor,
        mask: torch.Tensor | None = None,
        height: int | None = None,
    ) -> tuple[torch.Tensor, Conditioning]:
        x = self.spatial_pos(self.proj_in(tokens))
        t_emb = self.t_embedder(t)
        grid = None if height is None else VideoGrid(x.shape[1], height, x.shape[2] // height)
        extras = {"t": t_emb, "mask": mask}
        return x, Conditioning(modulation=self.t_block(t_emb), context=context, extras=extras, grid=grid)

    def head(self, x: torch.Tensor, cond: Conditioning) -> torch.Tensor:
        return self.final(x, cond.extras["t"])


class TextVideoBlock(JointBlock):
    """A user's joint block (MMDiT-style, not one of ours): separate text projections, per-stream adaLN."""

    class Attention(JointAttention):
        def __init__(self, dim: int, heads: int, rope: GridRotaryEmbedding) -> None:
            super().__init__(heads)
            self.video_qkv, self.text_qkv = nn.Linear(dim, 3 * dim), nn.Linear(dim, 3 * dim)
            self.video_out, self.text_out = nn.Linear(dim, dim), nn.Linear(dim, dim)
            self.rope = rope

        def project(self, x: torch.Tensor, context: torch.Tensor):
            heads = (self.num_heads, -1)
            video = self.video_qkv(x).unflatten(-1, (3, *heads)).unbind(-3)
            return video, self.text_qkv(context).unflatten(-1, (3, *heads)).unbind(-3)

        def output(self, o: torch.Tensor, context_o: torch.Tensor):
            return self.video_out(o.flatten(-2)), self.text_out(context_o.flatten(-2))

    def __init__(self, dim: int, heads: int, rope: GridRotaryEmbedding) -> None:
        super().__init__()
        self.attn = JointBranch(self.Attention(dim, heads, rope), nn.LayerNorm(dim), nn.LayerNorm(dim))
        self.mlp = JointBranch(FeedForward(dim, 2 * dim), nn.LayerNorm(dim, elementwise_affine=False))
        self.ada = nn.Linear(dim, 8 * dim)

    def forward(self, x: torch.Tensor, cond: Conditioning) -> tuple[torch.Tensor, torch.Tensor]:
        scale, gate, text_scale, text_gate, mlp_gate, text_mlp_gate, shift, text_shift = self.ada(
            cond.modulation
        ).chunk(8, dim=-1)
        video = {"shift": shift[:, None, None], "scale": scale[:, None, None], "gate": gate[:, None, None]}
        text = {"context_shift": text_shift[:, None], "context_scale": text_scale[:, None]}
        dx, dc = self.attn(
            x,
            cond.context,
            **video,
            **text,
            context_gate=text_gate[:, None],
            mask=cond.extras["mask"],
            context_mask=cond.context_mask,
            grid=cond.grid,
        )
        x, context = x + dx, cond.context + dc
        dx, dc = self.mlp(x, context, gate=mlp_gate[:, None, None], context_gate=text_mlp_gate[:, None])
        return x + dx, context + dc


class TextVideoDiT(STBackbone):
    """Joint text-video attention blocks (3-D RoPE on the video), a padded text mask and an optional video mask."""

    def __init__(self, dim: int = 24, heads: int = 4, in_dim: int = 4, context_dim: int = 8, depth: int = 2) -> None:
        super().__init__()
        self.proj_in = nn.Linear(in_dim, dim)
        self.text_in = nn.Linear(context_dim, dim)
        self.t_embedder = TimestepEmbedder(dim)
        rope = GridRotaryEmbedding(dim // heads, interpolation_scale=(1.0, 0.5, 2.0))
        self.blocks = nn.ModuleList(TextVideoBlock(dim, heads, rope) for _ in range(depth))
        self.final = FinalLayer(dim, in_dim)
        for param in self.parameters():
            nn.init.normal_(param, std=0.2)

    def embed(
        self,
        tokens: torch.Tensor,
        t: torch.Tensor,
        context: torch.Tensor,
        height: int,
        context_mask: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, Conditioning]:
        x = self.proj_in(tokens)
        t_emb = self.t_embedder(t)
        grid = VideoGrid(x.shape[1], height, x.shape[2] // height)
        return x, Conditioning(
            modulation=t_emb,
            context=self.text_in(context),
            context_mask=context_mask,
            grid=grid,
            extras={"t": t_emb, "mask": mask},
        )

    def head(self, x: torch.Tensor, cond: Conditioning) -> torch.Tensor:
        return self.final(x, cond.extras["t"])


def tiny_inputs(batch: int, frames: int, tokens: int, seed: int = 0, in_dim: int = 4, context_dim: int = 8):
    """Inputs identical on every rank (same seed): tokens, timesteps, text context."""
    g = torch.Generator().manual_seed(seed)
    return (
        torch.randn(batch, frames, tokens, in_dim, generator=g),
        torch.rand(batch, generator=g) * 1000,
        torch.randn(batch, 3, context_dim, generator=g),
    )


@dataclass
class PositionGain(Conditioning):
    """A user's conditioning with one more token field: a gain per spatial position, ``(B, 1, S, C)``."""

    gain: torch.Tensor | None = token_field()


class GainBlock(STBlock):
    """A user's block: per-frame adaLN from ``cond.modulation`` ``(B, T, 1, 3C)``, then a per-position gain."""

    def __init__(self, dim: int, heads: int, axis: str) -> None:
        super().__init__()
        self.attn = Branch(SelfAttention(dim, heads, axis), nn.LayerNorm(dim, elementwise_affine=False))
        self.mlp = Branch(FeedForward(dim, 2 * dim))

    def forward(self, x: torch.Tensor, cond: PositionGain) -> torch.Tensor:
        shift, scale, gate = split_modulation(cond.modulation, 3)
        x = x + self.attn(x, shift=shift, scale=scale, gate=gate)
        return x + self.mlp(x * cond.gain)


class TokenConditionedDiT(STBackbone):
    """Conditioning that varies along T (per-frame modulation) and along S (a gain), used by blocks and head."""

    def __init__(self, dim: int = 16, heads: int = 4, in_dim: int = 4) -> None:
        super().__init__()
        self.proj_in = nn.Linear(in_dim, dim)
        self.t_embedder = TimestepEmbedder(dim)
        self.t_block = nn.Sequential(nn.SiLU(), nn.Linear(dim, 3 * dim))
        self.gain = nn.Linear(1, dim)
        self.blocks = nn.ModuleList([GainBlock(dim, heads, axis) for axis in ("spatial", "temporal", "spatial")])
        self.final = FinalLayer(dim, in_dim)
        for param in self.parameters():
            nn.init.normal_(param, std=0.2)

    def embed(
        self, tokens: torch.Tensor, t: torch.Tensor, frame_t: torch.Tensor, position: torch.Tensor
    ) -> tuple[torch.Tensor, PositionGain]:
        """``t: (B,)``; ``frame_t: (B, T)`` scales each frame's timestep; ``position: (B, S)`` feeds the gain."""
        b, frames = frame_t.shape
        t_emb = self.t_embedder((t[:, None] * frame_t).flatten()).reshape(b, frames, 1, -1)
        gain = self.gain(position[..., None])[:, None]
        return self.proj_in(tokens), PositionGain(modulation=self.t_block(t_emb), gain=gain, extras={"t": t_emb})

    def head(self, x: torch.Tensor, cond: PositionGain) -> torch.Tensor:
        return self.final(x * cond.gain, cond.extras["t"] + cond.modulation[..., : x.shape[-1]])
