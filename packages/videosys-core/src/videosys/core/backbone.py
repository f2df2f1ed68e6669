"""Spatial-temporal DiT blocks and backbones: the interfaces DSP and PAB rely on.

A backbone is ``embed -> blocks -> head``. ``embed`` returns the ``(B, T, S, C)`` tokens and a
:class:`~videosys.core.conditioning.Conditioning` that travels beside them through every block; ``head`` maps the
tokens to the model's output. Sequence parallelism shards the tokens between ``embed`` and
``head``; attention caching wraps the blocks' :class:`~videosys.core.modules.Branch` modules.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from .conditioning import Conditioning
from .joint import JointAttention, JointBranch
from .layers.mlp import FeedForward
from .layers.modulation import split_modulation
from .layers.norm import NormKind
from .layers.rope import Rotary
from .layout import AttentionAxis, check_video_tokens
from .modules import Branch, CrossAttention, CrossAttentionBase, SelfAttention, VideoAttention

__all__ = [
    "AdaLNBlock",
    "BranchSite",
    "Conditioning",
    "InterfaceError",
    "JointBlock",
    "STBackbone",
    "STBlock",
    "branch_sites",
    "check_backbone",
]


class InterfaceError(TypeError):
    """A model does not follow the VideoSys backbone interfaces."""


class STBlock(nn.Module):
    """One transformer block with one self-attention axis.

    Subclasses assign ``self.attn`` (a :class:`Branch` around a :class:`VideoAttention`), optionally
    ``self.cross`` (a :class:`Branch` around a :class:`CrossAttentionBase`) and ``self.mlp`` (a
    :class:`Branch` around a token-wise module), and implement ``forward(x, cond) -> x``, adding each
    branch's output to the residual stream.
    """

    attn: Branch
    cross: Branch | None
    mlp: Branch

    def __init__(self) -> None:
        super().__init__()
        # An instance attribute, not a class default: a class-level None would shadow a registered submodule.
        self.cross = None

    @property
    def axis(self) -> AttentionAxis:
        """The axis this block's self-attention mixes."""
        return self.attn.inner.axis

    def branches(self) -> dict[str, Branch]:
        """The block's residual branches by attribute name, in execution order."""
        names = ("attn", "cross", "mlp")
        return {name: getattr(self, name) for name in names if getattr(self, name, None) is not None}

    def forward(self, x: torch.Tensor, cond: Conditioning) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError(f"{type(self).__name__} must implement forward(x, cond)")


class JointBlock(STBlock):
    """A block that carries a second token stream (text) beside the video tokens: CogVideoX, MMDiT.

    ``self.attn`` is a :class:`~videosys.core.JointBranch` around a :class:`~videosys.core.JointAttention`;
    ``self.mlp`` a branch around a token-wise module (a ``JointBranch`` to update the stream too); no
    ``cross``. ``forward(x, cond) -> (x, context)`` reads the stream as ``cond.context`` ``(B, L, C)`` and
    returns both updated; :meth:`STBackbone.run_blocks` hands the new stream to the next block.
    """

    def forward(  # type: ignore[override]
        self, x: torch.Tensor, cond: Conditioning
    ) -> tuple[torch.Tensor, torch.Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError(f"{type(self).__name__} must implement forward(x, cond) -> (x, context)")


class AdaLNBlock(STBlock):
    """The adaLN-zero block of DiT, PixArt, Latte and STDiT3.

    ``x += gate1 * attn(modulate(norm(x)))``; ``x += cross(x, context)`` when ``cross_attention``;
    ``x += gate2 * mlp(modulate(norm(x)))``. The six shift/scale/gate vectors come from
    ``cond.modulation``: added to a learned ``scale_shift_table`` (``modulation="table"``, adaLN-single:
    PixArt, Latte, STDiT3) or through a per-block SiLU + linear layer (``"linear"``, DiT). A modulation
    laid out like the tokens, ``(B, T|1, S|1, 6C)``, modulates each frame (or position) with its own values.
    The attention gets ``cond.grid`` (for a :class:`~videosys.core.layers.GridRotaryEmbedding`) and
    ``cond.attention_mask``.
    ``attention`` / ``cross`` replace the default :class:`SelfAttention` / :class:`CrossAttention` with
    modules of another parameter layout (e.g. fused projections), built by the caller.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        axis: AttentionAxis | str,
        *,
        mlp_ratio: float = 4.0,
        cross_attention: bool = False,
        context_dim: int | None = None,
        modulation: str = "table",
        qk_norm: NormKind | None = None,
        rope: Rotary | None = None,
        qkv_bias: bool = True,
        norm_eps: float = 1e-6,
        attention: VideoAttention | None = None,
        cross: CrossAttentionBase | None = None,
    ) -> None:
        super().__init__()
        self.dim = dim
        axis = AttentionAxis.parse(axis)
        if attention is None:
            attention = SelfAttention(dim, num_heads, axis, qkv_bias=qkv_bias, qk_norm=qk_norm, rope=rope)
        elif attention.axis is not axis:
            raise ValueError(
                f"the given attention mixes along {attention.axis.value!r}, the block along {axis.value!r}"
            )

        def norm() -> nn.Module:
            return nn.LayerNorm(dim, elementwise_affine=False, eps=norm_eps)

        self.attn = Branch(attention, norm())
        if cross is not None:
            self.cross = Branch(cross)
        elif cross_attention:
            self.cross = Branch(CrossAttention(dim, num_heads, context_dim, qkv_bias=qkv_bias))
        self.mlp = Branch(FeedForward(dim, int(dim * mlp_ratio)), norm())
        if modulation == "table":
            self.scale_shift_table = nn.Parameter(torch.randn(6, dim) / dim**0.5)
        elif modulation == "linear":
            self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))
        else:
            raise ValueError(f"unknown modulation {modulation!r}; expected 'table' or 'linear'")
        self.modulation = modulation

    def modulation_params(self, cond: Conditioning) -> tuple[torch.Tensor, ...]:
        """shift/scale/gate for attention, then for the MLP, each ``(B, 1, 1, C)`` or ``(B, T|1, S|1, C)``."""
        if cond.modulation is None:
            raise ValueError(f"{type(self).__name__} needs cond.modulation (the embedded timestep), got None")
        if self.modulation == "table":
            return split_modulation(cond.modulation, 6, table=self.scale_shift_table)
        return split_modulation(self.adaLN_modulation(cond.modulation), 6)

    def forward(self, x: torch.Tensor, cond: Conditioning) -> torch.Tensor:
        check_video_tokens(x, channels=self.dim)
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = self.modulation_params(cond)
        x = x + self.attn(x, shift=shift_msa, scale=scale_msa, gate=gate_msa, mask=cond.attention_mask, grid=cond.grid)
        if self.cross is not None:
            x = x + self.cross(x, cond.context, cond.context_mask)
        return x + self.mlp(x, shift=shift_mlp, scale=scale_mlp, gate=gate_mlp)


class STBackbone(nn.Module):
    """A DiT backbone: ``embed(...) -> (x, cond)``, ``blocks``, ``head(x, cond)``.

    Subclasses implement :meth:`embed` and :meth:`head` and fill ``self.blocks`` with
    :class:`STBlock` modules. ``gradient_checkpointing = True`` recomputes each block in backward.
    """

    blocks: nn.ModuleList
    gradient_checkpointing: bool = False
    resting_axis: AttentionAxis = AttentionAxis.SPATIAL
    """The token axis sequence parallelism shards unless told otherwise (a model's measured best; S by default)."""

    def embed(self, *args: Any, **kwargs: Any) -> tuple[torch.Tensor, Conditioning]:  # pragma: no cover
        raise NotImplementedError(f"{type(self).__name__} must implement embed(...) -> (x, cond)")

    def head(self, x: torch.Tensor, cond: Conditioning) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError(f"{type(self).__name__} must implement head(x, cond)")

    def run_blocks(self, x: torch.Tensor, cond: Conditioning) -> torch.Tensor:
        """Apply every block in order; a :class:`JointBlock`'s updated stream becomes the next block's ``context``."""
        for block in self.blocks:
            if self.gradient_checkpointing and self.training and torch.is_grad_enabled():
                out = checkpoint(block, x, cond, use_reentrant=False)
            else:
                out = block(x, cond)
            if isinstance(block, JointBlock):
                x, context = out
                cond = dataclasses.replace(cond, context=context)
            else:
                x = out
        return x

    def forward(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        x, cond = self.embed(*args, **kwargs)
        check_video_tokens(x, name="embed() output")
        return self.head(self.run_blocks(x, cond), cond)


class BranchSite(NamedTuple):
    """Where a branch sits in a backbone."""

    block: int
    """Index in ``backbone.blocks``."""
    layer: int
    """Index among the blocks of the same self-attention axis (spatial block 0, 1, ...; temporal 0, 1, ...)."""
    block_axis: AttentionAxis
    """The axis of the block's self-attention."""
    name: str
    """The branch's attribute on the block: ``"attn"``, ``"cross"`` or ``"mlp"``."""
    branch: Branch


def check_backbone(model: nn.Module) -> None:
    """Raise :class:`InterfaceError` naming what breaks the interfaces, or return None when ``model`` conforms."""
    if not isinstance(model, STBackbone):
        raise InterfaceError(
            f"{type(model).__name__} is not a videosys.core.STBackbone; build the model on the core "
            "interfaces (embed / blocks / head) to use DSP and PAB"
        )
    blocks = getattr(model, "blocks", None)
    if not isinstance(blocks, nn.ModuleList) or len(blocks) == 0:
        raise InterfaceError(f"{type(model).__name__}.blocks must be a non-empty nn.ModuleList of STBlock")
    for i, block in enumerate(blocks):
        where = f"{type(model).__name__}.blocks[{i}] ({type(block).__name__})"
        if not isinstance(block, STBlock):
            raise InterfaceError(f"{where} is not a videosys.core.STBlock")
        if not isinstance(getattr(block, "attn", None), Branch) or not isinstance(block.attn.inner, VideoAttention):
            raise InterfaceError(f"{where}.attn must be a Branch around a VideoAttention")
        joint = isinstance(block.attn, JointBranch) and isinstance(block.attn.inner, JointAttention)
        if isinstance(block, JointBlock) != joint:
            raise InterfaceError(
                f"{where}: a JointBlock's attn must be a JointBranch around a JointAttention, and only a JointBlock's"
            )
        if block.cross is not None and (
            not isinstance(block.cross, Branch) or not isinstance(block.cross.inner, CrossAttentionBase)
        ):
            raise InterfaceError(f"{where}.cross must be None or a Branch around a CrossAttentionBase")
        if not isinstance(getattr(block, "mlp", None), Branch) or block.mlp.axis is not None:
            raise InterfaceError(f"{where}.mlp must be a Branch around a token-wise module (no attention axis)")


def branch_sites(model: STBackbone) -> list[BranchSite]:
    """Every residual branch of a conforming backbone, in execution order."""
    check_backbone(model)
    sites: list[BranchSite] = []
    layers_seen: dict[AttentionAxis, int] = {}
    for i, block in enumerate(model.blocks):
        layer = layers_seen.get(block.axis, 0)
        layers_seen[block.axis] = layer + 1
        sites.extend(BranchSite(i, layer, block.axis, name, branch) for name, branch in block.branches().items())
    return sites
