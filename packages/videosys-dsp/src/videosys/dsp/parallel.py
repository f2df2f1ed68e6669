"""Put a backbone's tokens on a sequence-parallel group: :func:`parallelize` and :func:`deparallelize`.

Between ``embed`` and ``head`` every rank holds a slice of the *resting* axis (``S`` by default) of the
``(B, T, S, C)`` tokens; ``embed``'s output is split and ``head``'s input gathered. Each self-attention
is then run according to the mode:

============================  ==================  =========================  =======================
attention over                ``"dsp"``           ``"ulysses"``              ``"ulysses-resting"``
============================  ==================  =========================  =======================
the other axis                local, no comm      Ulysses                    local, no comm
the resting axis              switch in / out     Ulysses                    Ulysses
``FULL`` (``T * S``)          USP                 USP                        USP
============================  ==================  =========================  =======================

- *switch in / out* (DSP): one all-to-all shards the other axis instead, so the attended axis is whole;
  the attention module runs unchanged (projections included); one all-to-all switches back. Both sit
  inside the attention module, hence inside its :class:`~videosys.core.Branch`: when attention caching
  reuses the branch, the switches are skipped too. ``2 M/N`` per wrapped attention.
- *Ulysses*: around ``mix`` only, q, k and v are exchanged sequence <-> heads (each rank gets the whole
  sequence for ``H/N`` heads), and the output back: ``4 M/N`` per attention; needs ``H % N == 0``.
  ``"ulysses"`` is the baseline xDiT and diffusers apply; ``"ulysses-resting"`` with the spatial resting
  axis is Open-Sora 1.2's own scheme.
- *Joint attention* (:class:`~videosys.core.JointAttention`, text and video in one sequence): Ulysses over
  the joint sequence; the text stream is whole on every rank, keeps this rank's heads, and its output heads
  are replicated (:func:`~videosys.dsp.collectives.replicate`). Needs ``H % N == 0``.
- *USP* (:mod:`videosys.dsp.usp`): Ulysses over as many ranks as the heads allow, ring attention
  (:mod:`videosys.dsp.ring`) across the rest; plain Ulysses when the heads divide by ``N``.
  ``full_attention="ulysses"`` or ``"ring"`` forces one.

Cross-attention, MLPs, norms and modulation are token-wise and run on the local slice; the blocks get
the matching slice of every conditioning tensor laid out like the tokens (the ``Conditioning``'s token
fields, see :func:`videosys.core.token_field`), padded like the tokens, and ``head`` the whole one. Position tables
(:class:`~videosys.core.layers.AxisEmbedding`) along the resting axis used inside the blocks get the
slice's global offset. Padding added when an axis does not divide by ``N`` never takes part in an
attention: it is trimmed before and restored after. A self-attention mask (boolean, True = attend)
describes the whole video, broadcastable to its ``(B, T, S)`` as without parallelism; each attention
takes the slice its tokens need.

The wrapping (:mod:`videosys.core.patching`, at the ``LAYOUT`` level) goes on instance methods (``embed``,
``head``, an attention's ``forward`` or ``mix``, an axis embedding's ``forward``): the modules, their types
and parameter names stay the same, so checkpoints load and save identically with or without sequence
parallelism, and a cache such as PAB's composes with it in either order.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
import torch.distributed as dist
from torch import nn

from videosys.core import (
    AttentionAxis,
    Conditioning,
    JointAttention,
    STBackbone,
    VideoAttention,
    VideoGrid,
    check_backbone,
    check_video_tokens,
    token_fields,
)
from videosys.core.layers import AxisEmbedding
from videosys.core.patching import MethodPatch, Nesting, wrap_method

from .collectives import ProcessGroup, gather, replicate, resolve_group, split, switch
from .masks import whole_video_mask
from .usp import HEAD_DIM, FullAttention, USPLayout, plan_usp

__all__ = [
    "MODES",
    "Mode",
    "SequenceParallel",
    "average_gradients",
    "deparallelize",
    "parallelize",
    "sequence_parallel",
]

Mode = Literal["dsp", "ulysses", "ulysses-resting"]
MODES: tuple[str, ...] = ("dsp", "ulysses", "ulysses-resting")

_STATE_ATTR = "_videosys_sequence_parallel"
_TOKEN_DIM = {AttentionAxis.TEMPORAL: 1, AttentionAxis.SPATIAL: 2}
_TEXT_HEAD_DIM = 2  # of a joint attention's text q/k/v and output, (B, L, H, D)


@dataclass
class SequenceParallel:
    """How a parallelized backbone is sharded, and the unpadded length of the current forward's resting axis."""

    group: ProcessGroup
    ranks: int
    rank: int
    resting_axis: AttentionAxis
    mode: str
    pad: bool
    length: int | None = None
    """Unpadded length of the resting axis, recorded by ``embed`` (kept for recomputation in backward)."""
    in_blocks: bool = False
    """True between the split and the gather (and after, until the next ``embed``)."""
    conditioning: tuple[Conditioning, Conditioning] | None = None
    """The blocks' (sliced) and the whole conditioning of the current forward, so ``head`` gets the whole one."""
    patched: list[MethodPatch] = field(default_factory=list)

    @property
    def dim(self) -> int:
        """The resting axis' dim in ``(B, T, S, ...)``."""
        return _TOKEN_DIM[self.resting_axis]

    @property
    def other_dim(self) -> int:
        return 3 - self.dim

    def __deepcopy__(self, memo: dict) -> SequenceParallel:
        """A copied model shares the process group and patches its own copied modules."""
        copied = copy.copy(self)
        memo[id(self)] = copied
        copied.patched = copy.deepcopy(self.patched, memo)
        return copied

    def resting_length(self) -> int:
        if self.length is None:
            raise RuntimeError("the sharded blocks ran before embed(): call the backbone's forward, not its blocks")
        return self.length


def sequence_parallel(model: nn.Module) -> SequenceParallel | None:
    """The sharding of a model :func:`parallelize` has wrapped, or None."""
    return getattr(model, _STATE_ATTR, None)


def parallelize(
    model: STBackbone,
    group: ProcessGroup | None = None,
    *,
    resting_axis: AttentionAxis | str | None = None,
    mode: Mode = "dsp",
    pad: bool = True,
    full_attention: FullAttention = "usp",
    ulysses_size: int | None = None,
) -> STBackbone:
    """Shard ``model``'s tokens over ``group`` (default: WORLD) along ``resting_axis``; returns ``model``.

    ``resting_axis=None`` takes the model's own default, :attr:`videosys.core.STBackbone.resting_axis`.

    ``mode`` picks how self-attention runs (see the module docs). ``pad=False`` raises instead of
    padding an axis whose length does not divide by the group size. ``full_attention`` picks how ``FULL``
    attention runs: ``"usp"`` (Ulysses as wide as the heads allow, ``ulysses_size`` or
    ``gcd(heads, N)``, ring attention across the rest: plain Ulysses when the heads divide by ``N``),
    ``"ulysses"`` (raise when they do not) or ``"ring"``. Every rank must call it on the same
    model with the same arguments, and then feed every forward the same inputs.
    """
    check_backbone(model)
    if sequence_parallel(model) is not None:
        raise RuntimeError(f"{type(model).__name__} is already parallelized; call deparallelize(model) first")
    if mode not in MODES:
        raise ValueError(f"unknown sequence-parallel mode {mode!r}; expected one of {', '.join(map(repr, MODES))}")
    resting = AttentionAxis.parse(model.resting_axis if resting_axis is None else resting_axis)
    if resting not in _TOKEN_DIM:
        raise ValueError(f"the resting (sharded) axis must be 'spatial' or 'temporal', got {resting.value!r}")
    group = resolve_group(group)
    state = SequenceParallel(group, dist.get_world_size(group), dist.get_rank(group), resting, mode, pad)

    plans = []
    for i, block in enumerate(model.blocks):
        attention = block.attn.inner
        plan = _plan(attention.axis, resting, mode)
        where = f"{type(model).__name__}.blocks[{i}].attn.inner"
        if isinstance(attention, JointAttention):
            plan = _joint_plan(attention, state.ranks, full_attention, where)
        elif attention.axis is AttentionAxis.FULL:
            plan = plan_usp(group, attention.num_heads, full_attention, ulysses_size, where)
            if plan.ring > 1 and type(attention).mix is not VideoAttention.mix:
                raise ValueError(
                    f"{where} overrides VideoAttention.mix, which ring attention replaces (it attends block by "
                    f"block); use full_attention='ulysses' with a group size dividing its {attention.num_heads} heads"
                )
        elif plan == "ulysses" and attention.num_heads % state.ranks:
            raise ValueError(
                f"{where} ({attention.axis.value} attention) has {attention.num_heads} heads, which do not divide "
                f"by the {state.ranks} ranks of the group: Ulysses (used by mode {mode!r} for this attention) "
                f"gives each rank heads/N heads; use a group size that divides {attention.num_heads}"
            )
        plans.append((attention, plan))

    _patch(state, model, "embed", _sharded_embed)
    _patch(state, model, "head", _gathered_head)
    for attention, plan in plans:
        if plan == "joint":
            _patch(state, attention, "mix", _joint_ulysses_mix)
        elif plan == "switch":
            _patch(state, attention, "forward", _switched_forward)
        elif plan == "ulysses" or (isinstance(plan, USPLayout) and plan.ring == 1):
            _patch(state, attention, "mix", _ulysses_mix)
        elif isinstance(plan, USPLayout):
            _patch(state, attention, "mix", functools.partial(_usp_mix, plan))
        else:
            _patch(state, attention, "forward", _local_forward)
    for module in model.modules():
        if isinstance(module, AxisEmbedding) and module.axis is resting:
            _patch(state, module, "forward", _offset_forward)
    setattr(model, _STATE_ATTR, state)
    return model


def deparallelize(model: STBackbone) -> STBackbone:
    """Undo :func:`parallelize`: the model runs whole on one rank again; returns ``model``."""
    state = sequence_parallel(model)
    if state is None:
        raise ValueError(f"{type(model).__name__} is not parallelized (parallelize() was not called on it)")
    for patch in reversed(state.patched):
        patch.remove()
    delattr(model, _STATE_ATTR)
    return model


def average_gradients(model: nn.Module, group: ProcessGroup | None = None) -> None:
    """Average every parameter gradient over ``group``: the single-process gradients, for training without DDP.

    DDP (or a ColossalAI booster) over the same ranks already does this; see the gradient convention
    in :mod:`videosys.dsp.collectives`.
    """
    group = resolve_group(group)
    ranks = dist.get_world_size(group)
    for param in model.parameters():
        if param.grad is not None:
            dist.all_reduce(param.grad, group=group)
            param.grad.div_(ranks)


def _joint_plan(attention: JointAttention, ranks: int, full_attention: str, where: str) -> str:
    """Joint attention runs Ulysses over heads (text heads split too); no ring: the text would travel with it."""
    if full_attention == "ring" or attention.num_heads % ranks:
        raise ValueError(
            f"{where} is a JointAttention with {attention.num_heads} heads: joint attention runs Ulysses over "
            f"heads, so the {ranks} ranks must divide the heads (and full_attention must not be 'ring', got "
            f"{full_attention!r}); use a group size that divides {attention.num_heads}"
        )
    return "joint"


def _plan(axis: AttentionAxis, resting: AttentionAxis, mode: str) -> str:
    """``"local"``, ``"switch"`` or ``"ulysses"`` for an attention over ``axis`` (``FULL``: see :mod:`.usp`)."""
    if axis is resting:
        return "switch" if mode == "dsp" else "ulysses"
    return "ulysses" if mode == "ulysses" else "local"


def _patch(state: SequenceParallel, obj: object, name: str, wrapper: Callable) -> None:
    """Wrap ``obj.<name>`` as ``wrapper(state, method, *args)`` (see :mod:`videosys.core.patching`)."""
    state.patched.append(wrap_method(obj, name, functools.partial(wrapper, state), Nesting.LAYOUT))


def _local_mask(
    state: SequenceParallel, mask: torch.Tensor | None, video: tuple[int, int, int], dim: int
) -> torch.Tensor | None:
    """This rank's slice, along ``dim``, of a mask given for the whole ``video`` ``(B, T, S)``.

    Padding positions get True: a padded sequence must have a key to attend to (its output is dropped).
    """
    if mask is None or mask.dim() < 3 - dim or mask.shape[dim - 3] == 1:
        return mask  # None, or broadcast along the sharded axis
    mask = whole_video_mask(mask, video)
    chunk = -(-video[dim] // state.ranks)
    padding = list(video)
    padding[dim] = chunk * state.ranks - video[dim]
    mask = torch.cat([mask, mask.new_ones(padding)], dim=dim)
    return mask.narrow(dim, state.rank * chunk, chunk)


def _video_shape(state: SequenceParallel, x: torch.Tensor) -> tuple[int, int, int]:
    """The whole video's ``(B, T, S)`` for a slice ``x`` sharded along the resting axis."""
    shape = list(x.shape[:3])
    shape[state.dim] = state.resting_length()
    return tuple(shape)


def _sharded_embed(
    state: SequenceParallel, embed: Callable, *args: Any, **kwargs: Any
) -> tuple[torch.Tensor, Conditioning]:
    state.in_blocks = False
    x, cond = embed(*args, **kwargs)
    check_video_tokens(x, name="embed() output")
    if cond.grid is not None:
        cond.grid.check(AttentionAxis.FULL, x.shape[1], x.shape[2])
    state.length = x.shape[state.dim]
    x = split(x, state.dim, state.group, pad=state.pad)
    local = _local_conditioning(state, cond, tuple(x.shape[:3]))
    state.conditioning = (local, cond)
    state.in_blocks = True
    return x, local


def _local_conditioning(state: SequenceParallel, cond: Conditioning, local: tuple[int, ...]) -> Conditioning:
    """``cond`` with each token field cut to this rank's slice of the resting axis (edge-padded like the tokens).

    A plain slice, no collective: every rank holds the whole tensor, and the gradient of its slice reaches
    the parameters that made it exactly like the gradient of a per-sample modulation does.
    """
    sliced = {}
    for name, value in token_fields(cond).items():
        video = list(local)
        video[state.dim] = state.resting_length()
        try:
            torch.broadcast_shapes(value.shape[:3], tuple(video))
        except RuntimeError:
            raise ValueError(
                f"{type(cond).__name__}.{name} has shape {tuple(value.shape)}, but a token field must be laid out "
                f"like the tokens (B, T, S) = {tuple(video)}, with size 1 along an axis it does not vary"
            ) from None
        if value.shape[state.dim] == 1:
            continue  # the same for every position of the sharded axis
        chunk = local[state.dim]
        missing = chunk * state.ranks - value.shape[state.dim]
        if missing:
            edge = value.narrow(state.dim, value.shape[state.dim] - 1, 1)
            value = torch.cat([value] + [edge] * missing, dim=state.dim)
        sliced[name] = value.narrow(state.dim, state.rank * chunk, chunk)
    return dataclasses.replace(cond, **sliced) if sliced else cond


def _gathered_head(state: SequenceParallel, head: Callable, x: torch.Tensor, cond: Conditioning) -> torch.Tensor:
    if state.conditioning is not None and cond is state.conditioning[0]:
        cond = state.conditioning[1]
    x = gather(x, state.dim, state.resting_length(), state.group)
    state.in_blocks = False
    try:
        return head(x, cond)
    finally:
        state.in_blocks = True  # blocks recomputed in backward (gradient checkpointing) are sharded


def _switched_forward(
    state: SequenceParallel,
    forward: Callable,
    x: torch.Tensor,
    *,
    mask: torch.Tensor | None = None,
    grid: VideoGrid | None = None,
) -> torch.Tensor:
    mask = _local_mask(state, mask, _video_shape(state, x), state.other_dim)
    whole = switch(x, state.other_dim, state.dim, state.group, length=state.resting_length(), pad=state.pad)
    out = forward(whole, mask=mask, grid=grid)  # the attended axis is whole: positions along it are global
    return switch(out, state.dim, state.other_dim, state.group, length=x.shape[state.other_dim], pad=state.pad)


def _local_forward(
    state: SequenceParallel,
    forward: Callable,
    x: torch.Tensor,
    *,
    mask: torch.Tensor | None = None,
    grid: VideoGrid | None = None,
) -> torch.Tensor:
    return forward(x, mask=_local_mask(state, mask, _video_shape(state, x), state.dim), grid=grid)


def _ulysses_mix(
    state: SequenceParallel,
    mix: Callable,
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None = None,
    grid: VideoGrid | None = None,
) -> torch.Tensor:
    length = state.resting_length()
    q, k, v = (switch(t, HEAD_DIM, state.dim, state.group, length=length, pad=False, kind="ulysses") for t in (q, k, v))
    out = mix(q, k, v, mask, grid)  # both axes whole: mask and positions as in one process
    return switch(out, state.dim, HEAD_DIM, state.group, kind="ulysses")


def _joint_ulysses_mix(
    state: SequenceParallel,
    mix: Callable,
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
    """Ulysses over ``[text; video]``: the video switches sequence -> heads, the text (whole on every rank)
    keeps this rank's heads; the video output switches back and the text output's heads are replicated."""
    length = state.resting_length()
    q, k, v = (switch(t, HEAD_DIM, state.dim, state.group, length=length, pad=False, kind="ulysses") for t in (q, k, v))
    heads = q.shape[HEAD_DIM]
    text = (t.narrow(_TEXT_HEAD_DIM, state.rank * heads, heads) for t in (context_q, context_k, context_v))
    out, context_out = mix(q, k, v, *text, mask, context_mask, grid)  # both axes whole: as in one process
    out = switch(out, state.dim, HEAD_DIM, state.group, kind="ulysses")
    return out, replicate(context_out, _TEXT_HEAD_DIM, state.group, kind="joint")


def _usp_mix(
    layout: USPLayout,
    state: SequenceParallel,
    mix: Callable,
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None = None,
    grid: VideoGrid | None = None,
) -> torch.Tensor:
    attention = mix.__self__
    rotate = functools.partial(attention.rotate, grid=grid)
    length = state.resting_length()
    return layout.attend(q, k, v, mask, dim=state.dim, length=length, scale=attention.scale, rotate=rotate)


def _offset_forward(state: SequenceParallel, forward: Callable, x: torch.Tensor, offset: int = 0) -> torch.Tensor:
    if not state.in_blocks:
        return forward(x, offset)
    local = x.shape[state.dim]
    start = state.rank * local
    real = max(0, min(local, state.resting_length() - start))  # the rest is padding
    if real == local:
        return forward(x, offset + start)
    if real == 0:
        return x
    positions, padding = x.split([real, local - real], dim=state.dim)
    return torch.cat([forward(positions, offset + start), padding], dim=state.dim)
