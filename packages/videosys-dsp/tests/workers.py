"""What each spawned rank runs; every check compares against a single-process computation or a closed form."""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from dsp_testing import TextVideoDiT, TinyVideoDiT, TokenConditionedDiT, tiny_inputs

from videosys.core import VideoAttention, attention_backend, scaled_dot_product
from videosys.core.patching import method_wrappers
from videosys.dsp import (
    MODES,
    average_gradients,
    comm_stats,
    deparallelize,
    gather,
    parallel,
    parallelize,
    reset_comm_stats,
    ring_attention,
    split,
    switch,
)

TOL = {"rtol": 1e-5, "atol": 1e-5}


def tolerance() -> dict[str, float]:
    """1e-5 in float32; 1e-8 when the check runs in float64 (reordered sums drift ~1e-10 there)."""
    return TOL if torch.get_default_dtype() == torch.float32 else {"rtol": 1e-8, "atol": 1e-8}


def _uses_ring(model: torch.nn.Module) -> bool:
    """Whether a FULL attention of ``model`` runs a ring (a USP layout with ring size > 1)."""
    wrappers = (w for module in model.modules() for w in method_wrappers(module, "mix"))
    return any(isinstance(w, functools.partial) and getattr(w.args[0], "ring", 1) > 1 for w in wrappers)


def assert_grads_match(model: torch.nn.Module, reference: torch.nn.Module, where: str) -> None:
    """Averaged parameter gradients equal the single-process ones (rtol 1e-5, atol 1e-5 of each tensor's scale).

    fp32 sums over shards and ranks run in another order. Under a ring the atol is 5e-5 of the scale:
    key-projection gradients are differences of nearly equal terms (softmax is shift-invariant: ``to_k.bias``'s
    is exactly 0), summed over key blocks in another order, so they drift by ~2e-5; the float64 runs of the
    same checks agree to 1e-9. A parameter the loss does not reach (a joint model's last text update) has no
    gradient in either.
    """
    tol = tolerance()
    ring = _uses_ring(model)
    for (name, param), ref in zip(model.named_parameters(), reference.parameters()):
        if ref.grad is None:
            assert param.grad is None, f"{where}, grad {name}: the single process has none, sharded {param.grad}"
            continue
        atol = (5 if ring else 1) * tol["atol"] * max(1.0, ref.grad.abs().max().item())
        torch.testing.assert_close(
            param.grad, ref.grad, rtol=tol["rtol"], atol=atol, msg=lambda m, n=name: f"{where}, grad {n}: {m}"
        )


def in_float64(check: Callable[..., None], *args: object) -> None:
    """Run ``check(*args)`` with float64 models and inputs: exactness without fp32 rounding."""
    torch.set_default_dtype(torch.float64)
    try:
        check(*args)
    finally:
        torch.set_default_dtype(torch.float32)


def _shard(x: torch.Tensor, dim: int, ranks: int, rank: int) -> torch.Tensor:
    """This rank's slice of ``x`` along ``dim`` after zero-padding to a multiple of ``ranks``, by hand."""
    chunk = -(-x.shape[dim] // ranks)
    pad_shape = list(x.shape)
    pad_shape[dim] = chunk * ranks - x.shape[dim]
    padded = torch.cat([x, x.new_zeros(pad_shape)], dim=dim)
    return padded.narrow(dim, rank * chunk, chunk)


def collectives_round_trip() -> None:
    ranks, rank = dist.get_world_size(), dist.get_rank()
    for frames, tokens in [(1, 5), (3, 5), (4, 8), (2, 1)]:
        whole = torch.randn(2, frames, tokens, 6, generator=torch.Generator().manual_seed(frames * 10 + tokens))
        for dim, other in [(1, 2), (2, 1)]:
            x = whole.clone().requires_grad_()
            local = split(x, dim)
            assert torch.equal(local, _shard(whole, dim, ranks, rank))
            back = gather(local, dim, whole.shape[dim])
            assert torch.equal(back, whole)
            # DSP switch: shard `other` instead of `dim`; the result is the hand-made shard along `other`.
            switched = switch(local, other, dim, length=whole.shape[dim])
            assert torch.equal(switched, _shard(whole, other, ranks, rank))
            assert torch.equal(switch(switched, dim, other, length=whole.shape[other]), local)
            # Backward of gather(split(x)) and of the switch round trip is the identity.
            grad = torch.randn(whole.shape, generator=torch.Generator().manual_seed(3))  # same on every rank
            (back * grad).sum().backward()
            torch.testing.assert_close(x.grad, grad, rtol=0, atol=1e-6)
            x.grad = None
            switched = switch(split(x, dim), other, dim, length=whole.shape[dim])
            round_trip = gather(switch(switched, dim, other, length=whole.shape[other]), dim, whole.shape[dim])
            (round_trip * grad).sum().backward()
            torch.testing.assert_close(x.grad, grad, rtol=0, atol=1e-6)
    # Ulysses exchange: sequence <-> heads on (B, T, S, H, D), and back.
    q = torch.randn(2, 3, 5, 4 * ranks, 2, generator=torch.Generator().manual_seed(7))
    local = _shard(q, 2, ranks, rank)
    heads = switch(local, 3, 2, length=5, pad=False)
    assert torch.equal(heads, q[:, :, :, rank * 4 : (rank + 1) * 4])
    assert torch.equal(switch(heads, 2, 3), local)


def backbone_matches_single_process(full: bool, heads: int = 4, options: dict | None = None) -> None:
    """Forward and averaged gradients equal one process; ``options`` go to ``parallelize`` (FULL: USP sizes)."""
    options = options or {}
    torch.manual_seed(0)
    reference = TinyVideoDiT(dim=8 * heads, heads=heads, full=full)
    cases = [(2, 3, 5), (1, 1, 8)] if not full else [(2, 3, 5)]
    for batch, frames, tokens in cases:
        inputs = tiny_inputs(batch, frames, tokens)
        weight = torch.randn(batch, frames, tokens, 4, generator=torch.Generator().manual_seed(1))
        case = f"{options}, shape={(batch, frames, tokens)}"
        _matches_in_every_mode(reference, inputs, weight, case, ("dsp",) if full else MODES, options)
        # Gradient checkpointing recomputes the sharded blocks in backward, after the gather.
        for resting in ("spatial", "temporal"):
            model = parallelize(copy.deepcopy(reference), resting_axis=resting)
            model.gradient_checkpointing = True
            model.zero_grad()
            (model(*inputs) * weight).sum().backward()
            average_gradients(model)
            assert_grads_match(model, reference, f"checkpointing, {resting=}")


def masked_attention_matches_single_process(
    heads: int = 4, modes: tuple[str, ...] = MODES, options: dict | None = None
) -> None:
    """Key masks on spatial, temporal and full attention, given for the whole video, in every mode."""
    options = options or {}
    torch.manual_seed(0)
    reference = TinyVideoDiT(dim=8 * heads, heads=heads, masked=True)
    batch, frames, tokens = 2, 3, 5
    g = torch.Generator().manual_seed(2)
    full_mask = torch.rand(batch, frames, tokens, generator=g) > 0.4
    full_mask[:, 0, :] = full_mask[:, :, 0] = True  # every frame and every position keeps a key
    weight = torch.randn(batch, frames, tokens, 4, generator=g)
    for mask in (full_mask, full_mask[:, :1, :]):  # whole; broadcast over frames (sliced or not, by resting axis)
        inputs = (*tiny_inputs(batch, frames, tokens), mask)
        _matches_in_every_mode(reference, inputs, weight, f"{options}, mask {tuple(mask.shape)}", modes, options)


def _matches_in_every_mode(
    reference: torch.nn.Module,
    inputs: tuple,
    weight: torch.Tensor,
    case: str,
    modes: tuple[str, ...] = MODES,
    options: dict | None = None,
) -> None:
    """Output and averaged gradients of every mode and resting axis equal the single-process ones."""
    reference.zero_grad()
    expected = reference(*inputs)
    (expected * weight).sum().backward()
    for resting in ("spatial", "temporal"):
        for mode in modes:
            model = parallelize(copy.deepcopy(reference), resting_axis=resting, mode=mode, **(options or {}))
            model.zero_grad()
            out = model(*inputs)
            where = f"{mode=}, {resting=}, {case}"
            torch.testing.assert_close(out, expected, **tolerance(), msg=lambda m, w=where: f"{w}: {m}")
            (out * weight).sum().backward()
            average_gradients(model)
            assert_grads_match(model, reference, where)


GRIDS = ((2, 3, 2, 3), (1, 2, 1, 5))
"""(B, T, H, W) of the grid-RoPE checks: on 2 to 4 ranks, some axis of each needs padding."""


def grid_rope_matches_single_process(
    heads: int, layouts: tuple[dict, ...], modes: tuple[str, ...] = MODES, grids: tuple = GRIDS
) -> None:
    """3-D RoPE on full attention and 2-D RoPE on spatial attention, for every resting axis, the ``modes``
    (with the first FULL layout) and each FULL layout (``parallelize`` options: Ulysses, ring, USP), on
    ``grids``. A ring shard must be rotated by its global (t, h, w)."""
    torch.manual_seed(0)
    reference = TinyVideoDiT(dim=12 * heads, heads=heads, grid_rope=True)
    for batch, frames, height, width in grids:
        tokens = height * width
        inputs = (*tiny_inputs(batch, frames, tokens), None, height)
        if height > 1:  # the rows matter: the same tokens as `width` rows attend differently
            with torch.no_grad():
                assert not torch.allclose(reference(*inputs), reference(*inputs[:-1], width), **TOL)
        weight = torch.randn(batch, frames, tokens, 4, generator=torch.Generator().manual_seed(frames))
        for i, options in enumerate(layouts):
            case = f"grid {(frames, height, width)}, {options}"
            _matches_in_every_mode(reference, inputs, weight, case, modes if i == 0 else ("dsp",), options)


def ring_shards_need_their_place() -> None:
    """Rotate ring shards as if each began the video, and the grid-RoPE check must fail: it can."""
    original = VideoAttention.rotate

    def from_the_origin(self, q, k, grid=None, start=(0, 0)):
        return original(self, q, k, grid)

    VideoAttention.rotate = from_the_origin
    try:
        with pytest.raises(AssertionError):
            grid_rope_matches_single_process(2, ({"full_attention": "ring"},), ("dsp",))
    finally:
        VideoAttention.rotate = original


def token_conditioning_matches_single_process() -> None:
    """Conditioning varying along T and along S, sliced with the tokens for blocks, whole for the head."""
    torch.manual_seed(0)
    reference = TokenConditionedDiT()
    batch, frames, tokens = 2, 3, 5
    g = torch.Generator().manual_seed(4)
    tokens_in, t, _ = tiny_inputs(batch, frames, tokens)
    inputs = (tokens_in, t, torch.rand(batch, frames, generator=g), torch.randn(batch, tokens, generator=g))
    _matches_in_every_mode(reference, inputs, torch.randn(batch, frames, tokens, 4, generator=g), "token fields")


def bytes_match_closed_form() -> None:
    """Forward and backward bytes per rank against the closed forms, on shapes that divide by N."""
    ranks = dist.get_world_size()
    batch, frames, tokens, dim = 2, 4, 8, 32
    shard = batch * frames * tokens * dim * 4 // ranks  # M/N bytes, fp32
    torch.manual_seed(0)
    pairs_model, full_model = TinyVideoDiT(dim=dim, heads=4), TinyVideoDiT(dim=dim, heads=4, full=True)
    pairs, full_attentions = 2, 2
    expected = {
        "dsp": {"switch": (2 * pairs, 2 * pairs * shard)},
        "ulysses": {"ulysses": (4 * 2 * pairs, 4 * 2 * pairs * shard)},
        "ulysses-resting": {"ulysses": (4 * pairs, 4 * pairs * shard)},
    }
    runs = [(pairs_model, mode, {}, counts, {}) for mode, counts in expected.items()]
    # FULL attention as Ulysses x ring (U x R = N), per attention: Ulysses' 4 all-to-alls of M/N when U > 1;
    # the ring sends k and v R-1 times forward; backward k and v R-1 times and their gradients R times.
    layouts = {(ranks, 1): {}, (1, ranks): {"full_attention": "ring"}}
    if ranks == 4:
        layouts[(2, 2)] = {"ulysses_size": 2}
    for (ulysses, ring), options in layouts.items():
        forward, backward = {}, {}
        if ulysses > 1:
            forward["ulysses"] = backward["ulysses.backward"] = (4 * full_attentions, 4 * full_attentions * shard)
        if ring > 1:
            forward["ring"] = (2 * (ring - 1) * full_attentions, 2 * (ring - 1) * full_attentions * shard)
            hops = 2 * (ring - 1) + 2 * ring
            backward["ring.backward"] = (hops * full_attentions, hops * full_attentions * shard)
        runs.append((full_model, "dsp", options, forward, backward))
    inputs = tiny_inputs(batch, frames, tokens)
    for model, mode, options, attention_counts, attention_backward in runs:
        for resting in ("spatial", "temporal"):
            parallelize(model, resting_axis=resting, mode=mode, **options)
            reset_comm_stats()
            out = model(*inputs)
            forward = {**attention_counts, "gather": (1, shard)}
            assert {k: tuple(v) for k, v in comm_stats().items()} == forward, (mode, options, resting, comm_stats())
            out.sum().backward()
            backward = attention_backward or {f"{kind}.backward": count for kind, count in attention_counts.items()}
            backward = {**backward, "split.backward": (1, shard)}
            assert {k: tuple(v) for k, v in comm_stats().items()} == {**forward, **backward}, (mode, options, resting)
            deparallelize(model)
    # The switches sit inside the attention branches: a branch whose output is reused (as attention
    # caching does) moves nothing; only the final gather remains.
    parallelize(pairs_model)
    cache = {}
    hooks = [
        block.attn.register_forward_hook(lambda m, a, out: cache.__setitem__(m, out)) for block in pairs_model.blocks
    ]
    with torch.no_grad():
        expected_out = pairs_model(*inputs)
    for hook in hooks:
        hook.remove()
    for block in pairs_model.blocks:
        block.attn.forward = lambda *args, branch=block.attn, **kwargs: cache[branch]
    reset_comm_stats()
    with torch.no_grad():
        torch.testing.assert_close(pairs_model(*inputs), expected_out, rtol=0, atol=0)
    assert {k: tuple(v) for k, v in comm_stats().items()} == {"gather": (1, shard)}


def errors_are_clear() -> None:
    torch.manual_seed(0)
    inputs = tiny_inputs(1, 3, 5)
    three_heads = TinyVideoDiT(dim=24, heads=3)
    with pytest.raises(ValueError, match=r"blocks\[0\]\.attn\.inner \(spatial attention\) has 3 heads.*2 ranks"):
        parallelize(three_heads, mode="ulysses")
    # FULL attention whose heads do not divide: an error only when no ring is allowed.
    full_three_heads = TinyVideoDiT(dim=24, heads=3, full=True)
    with pytest.raises(ValueError, match=r"blocks\[0\]\.attn\.inner \(full attention\) has 3 heads.*2 ranks.*'ring'"):
        parallelize(copy.deepcopy(full_three_heads), full_attention="ulysses")
    with pytest.raises(ValueError, match=r"ulysses_size=2 does not fit .*3 heads; the widest that does is 1"):
        parallelize(copy.deepcopy(full_three_heads), ulysses_size=2)
    with pytest.raises(ValueError, match=r"ulysses_size=2 applies to full_attention='usp', not 'ring'"):
        parallelize(copy.deepcopy(full_three_heads), full_attention="ring", ulysses_size=2)
    with pytest.raises(ValueError, match=r"unknown full_attention 'star'; expected one of 'usp', 'ulysses', 'ring'"):
        parallelize(copy.deepcopy(full_three_heads), full_attention="star")
    parallelize(full_three_heads)  # USP: a ring of 2
    # DSP switches whole tokens: any head count works.
    reference = three_heads(*inputs)
    torch.testing.assert_close(parallelize(copy.deepcopy(three_heads))(*inputs), reference, **TOL)

    model = TinyVideoDiT()
    parallelize(model, pad=False)
    with pytest.raises(ValueError, match=r"length 5, which does not divide by the 2 ranks.*padding is not allowed"):
        model(*tiny_inputs(1, 2, 5))
    with pytest.raises(ValueError, match=r"length 1, which does not divide by the 2 ranks.*or a smaller group"):
        model(*tiny_inputs(1, 1, 4))  # T == 1 must be sharded inside the spatial switch
    with pytest.raises(RuntimeError, match="already parallelized"):
        parallelize(model)
    model = parallelize(TinyVideoDiT(masked=True))
    with pytest.raises(
        ValueError,
        match=r"mask describes the whole video.*\(B, T, S\) = \(1, 3, 5\), got torch.bool of shape \(1, 3, 3\)",
    ):
        model(*inputs, torch.ones(1, 3, 3, dtype=torch.bool))

    # deparallelize restores the original: same outputs on one rank's whole input, no instance overrides left.
    original = TinyVideoDiT()
    state = copy.deepcopy(original.state_dict())
    model = copy.deepcopy(original)
    parallelize(model, mode="ulysses")
    assert model.state_dict().keys() == state.keys()
    deparallelize(model)
    reset_comm_stats()
    torch.testing.assert_close(model(*inputs), original(*inputs), rtol=0, atol=0)
    assert comm_stats() == {}
    assert not any(name in vars(m) for m in model.modules() for name in ("forward", "mix", "embed", "head"))

    # A deep copy of a parallelized model (an EMA copy, say) runs its own weights, and is undone alone.
    model = parallelize(copy.deepcopy(original))
    twin, halved = copy.deepcopy(model), copy.deepcopy(original)
    with torch.no_grad():
        for param in [*twin.parameters(), *halved.parameters()]:
            param.mul_(0.5)
    torch.testing.assert_close(twin(*inputs), halved(*inputs), **TOL)
    torch.testing.assert_close(model(*inputs), original(*inputs), **TOL)
    deparallelize(twin)
    reset_comm_stats()
    torch.testing.assert_close(twin(*inputs), halved(*inputs), rtol=0, atol=0)
    assert comm_stats() == {}
    torch.testing.assert_close(model(*inputs), original(*inputs), **TOL)


def subgroup_of_a_mesh() -> None:
    """World 4 as 2 data-parallel x 2 sequence-parallel groups: each pair shards its own sample (forward, grads)."""
    rank = dist.get_rank()
    groups = [dist.new_group([0, 1]), dist.new_group([2, 3])]
    group = groups[rank // 2]
    torch.manual_seed(0)
    reference = TinyVideoDiT()
    inputs = tiny_inputs(1, 3, 5, seed=rank // 2)  # data-parallel groups get different samples
    weight = torch.randn(1, 3, 5, 4, generator=torch.Generator().manual_seed(1))
    expected = reference(*inputs)
    (expected * weight).sum().backward()
    model = parallelize(copy.deepcopy(reference), group)
    model.zero_grad()
    out = model(*inputs)
    torch.testing.assert_close(out, expected, **TOL)
    (out * weight).sum().backward()
    average_gradients(model, group)
    assert_grads_match(model, reference, "mesh")


def ring_attention_matches_one_process() -> None:
    """Ring attention over R shards equals attention over the whole sequence in one process, forward and backward.

    Keys ±30 times larger than usual (adversarial logits), a key mask that leaves some rows without a key in
    most blocks, fp32 to 1e-5 and bf16 / fp16 inputs against the fp32 reference.
    """
    ranks, rank = dist.get_world_size(), dist.get_rank()
    g = torch.Generator().manual_seed(0)
    n, local, heads, dim = 2, 3, 2, 8
    total = local * ranks
    q, k, v = (torch.randn(n, total, heads, dim, generator=g) for _ in range(3))
    k = k * 30
    key_mask = torch.rand(n, total, generator=g) > 0.3
    key_mask[0, 0] = True
    key_mask[1] = False
    key_mask[1, -1] = True  # batch 1 attends to the very last key only: every other block is empty for it
    grad = torch.randn(n, total, heads, dim, generator=g)
    mine = slice(rank * local, (rank + 1) * local)
    # Half precision: against fp32 on the same rounded inputs, to a few units of the rounding (grads: of their scale).
    for dtype, atol in ((torch.float32, 1e-5), (torch.bfloat16, 2e-2), (torch.float16, 1e-2)):
        for mask in (None, key_mask):
            whole = [t.to(dtype).float().clone().requires_grad_() for t in (q, k, v)]
            expected = scaled_dot_product(*whole, mask, backend="math", scale=0.3)
            (expected * grad).sum().backward()
            shards = [t[:, mine].to(dtype).clone().requires_grad_() for t in (q, k, v)]
            out = ring_attention(*shards, mask, dist.group.WORLD, scale=0.3)
            where = f"{dtype}, mask={mask is not None}"
            assert out.dtype == dtype, where
            tol = {"rtol": 1e-5 if dtype is torch.float32 else 0, "atol": atol}
            torch.testing.assert_close(out.float(), expected[:, mine], **tol, msg=lambda m, w=where: f"{w}: {m}")
            (out.float() * grad[:, mine]).sum().backward()
            for name, shard, ref in zip("qkv", shards, whole):
                tol["atol"] = atol * max(1.0, ref.grad.abs().max().item())
                torch.testing.assert_close(
                    shard.grad.float(), ref.grad[:, mine], **tol, msg=lambda m, w=f"{where}, d{name}": f"{w}: {m}"
                )


def usp_training_follows_single_process(heads: int, **options) -> None:
    """A FULL-attention model trains a few SGD steps under USP along the single-process loss trajectory."""
    torch.manual_seed(0)
    reference = TinyVideoDiT(dim=8 * heads, heads=heads, full=True)
    model = parallelize(copy.deepcopy(reference), **options)
    optimizers = [torch.optim.SGD(m.parameters(), lr=0.01) for m in (reference, model)]
    for step in range(3):
        inputs = tiny_inputs(2, 3, 5, seed=step)
        target = torch.randn(2, 3, 5, 4, generator=torch.Generator().manual_seed(100 + step))
        losses = []
        for m, optimizer in zip((reference, model), optimizers):
            optimizer.zero_grad()
            loss = torch.nn.functional.mse_loss(m(*inputs), target)
            loss.backward()
            if m is model:
                average_gradients(model)
            optimizer.step()
            losses.append(loss.detach())
        torch.testing.assert_close(losses[1], losses[0], **TOL, msg=lambda m, s=step: f"step {s}: {m}")
    for param, ref in zip(model.parameters(), reference.parameters()):
        torch.testing.assert_close(param, ref, **TOL)


def padding_rule_is_load_bearing() -> None:
    """Break DSP's rule that padding positions attend (mask True) and the math backend must catch it.

    SDPA returns zeros for rows without keys, so the broken rule passes unseen there; the math backend
    returns NaN, which reaches the gradients. This guards the tests themselves: they can fail.
    """
    original = parallel._local_mask

    def padding_never_attends(state, mask, video, dim):
        local = original(state, mask, video, dim)
        if local is None or local.shape[dim - 3] == 1:
            return local
        positions = state.rank * local.shape[dim - 3] + torch.arange(local.shape[dim - 3])
        view = [1, 1, 1]
        view[dim] = -1
        return local & (positions < video[dim]).reshape(view)

    parallel._local_mask = padding_never_attends
    try:
        with attention_backend("math"), pytest.raises(AssertionError):
            masked_attention_matches_single_process(modes=("dsp",))
    finally:
        parallel._local_mask = original


def joint_attention_matches_single_process(heads: int) -> None:
    """A user's joint text-video model: every mode and resting axis equal one process (forward, gradients),
    with a padded text mask, and with a video key mask too; lengths that need padding on 2-4 ranks."""
    torch.manual_seed(0)
    reference = TextVideoDiT(dim=6 * heads, heads=heads)
    batch, frames, height, width = 2, 3, 2, 3
    tokens, text, context = height * width, 3, tiny_inputs(2, 3, 6)[2]
    context_mask = torch.tensor([[True] * text, [True] + [False] * (text - 1)])
    g = torch.Generator().manual_seed(4)
    video_mask = torch.rand(batch, frames, tokens, generator=g) > 0.3
    weight = torch.randn(batch, frames, tokens, 4, generator=g)
    for mask in (None, video_mask):
        inputs = (*tiny_inputs(batch, frames, tokens)[:2], context, height, context_mask, mask)
        case = f"joint, grid {(frames, height, width)}, video mask {mask is not None}"
        _matches_in_every_mode(reference, inputs, weight, case)
    # Bytes: each block replicates its text output, (B, L, C / N) from this rank, and reduce-scatters the
    # whole (B, L, C) gradient in backward (fp32).
    model = parallelize(copy.deepcopy(reference))
    reset_comm_stats()
    (model(*inputs) * weight).sum().backward()
    text_bytes = batch * text * reference.final.linear.in_features * 4
    stats, depth, ranks = comm_stats(), len(reference.blocks), dist.get_world_size()
    assert stats["joint"] == (depth, depth * text_bytes // ranks), stats
    # The last block's text update reaches no output, so no gradient flows back through its replicate.
    assert stats["joint.backward"] == (depth - 1, (depth - 1) * text_bytes), stats


def joint_attention_needs_heads_dividing_ranks() -> None:
    """Joint attention runs Ulysses only: heads that do not divide the ranks, or a forced ring, are named."""
    ranks = dist.get_world_size()
    for heads, options in ((ranks + 1, {}), (ranks, {"full_attention": "ring"})):
        with pytest.raises(ValueError, match=rf"JointAttention with {heads} heads.*{ranks} ranks must divide"):
            parallelize(TextVideoDiT(dim=6 * heads, heads=heads), **options)


def pab_over_usp_equals_pab_alone() -> None:
    """PAB over a USP-parallel FULL-attention model equals PAB on one process, step by step."""
    import videosys.pab as pab
    from videosys.core import denoising_step

    torch.manual_seed(0)
    reference = TinyVideoDiT(dim=24, heads=3, full=True)
    model = parallelize(copy.deepcopy(reference))
    config = pab.PABConfig(full=pab.Broadcast(interval=2))
    for m in (reference, model):
        pab.enable(m, config)
    inputs = tiny_inputs(2, 3, 5)
    with torch.no_grad():
        for i, t in enumerate([900, 700, 500, 300]):
            with denoising_step(i, t, 4):
                torch.testing.assert_close(model(*inputs), reference(*inputs), **TOL)
    assert pab.stats(model)["full"] == pab.stats(reference)["full"]
    assert pab.stats(model)["full"]["reused"] > 0


def pab_over_joint_attention_equals_pab_alone() -> None:
    """PAB (both streams' updates cached) over a DSP joint-attention model equals PAB on one process, step by
    step, whichever of the two was applied first; taking both off again (either order) leaves the bare model."""
    import videosys.pab as pab
    from videosys.core import denoising_step

    torch.manual_seed(0)
    bare = TextVideoDiT(dim=6 * dist.get_world_size(), heads=dist.get_world_size())
    reference = copy.deepcopy(bare)
    config = pab.PABConfig(full=pab.Broadcast(interval=2), mlp=None)
    pab.enable(reference, config)
    inputs = (*tiny_inputs(2, 3, 6), 2)

    def sampling(model: torch.nn.Module) -> list[torch.Tensor]:
        with torch.no_grad():
            outputs = []
            for i, t in enumerate([900, 700, 500, 300]):
                with denoising_step(i, t, 4):
                    outputs.append(model(*inputs))
            return outputs

    expected = sampling(reference)
    for pab_first in (True, False):
        model = copy.deepcopy(bare)
        on = [lambda m=model: pab.enable(m, config), lambda m=model: parallelize(m)]
        off = [lambda m=model: pab.disable(m), lambda m=model: deparallelize(m)]
        for step in on if pab_first else on[::-1]:
            step()
        for got, want in zip(sampling(model), expected):
            torch.testing.assert_close(got, want, **TOL, msg=lambda m, f=pab_first: f"pab_first={f}: {m}")
        assert pab.stats(model)["full"] == pab.stats(reference)["full"], pab_first
        for step in off if pab_first else off[::-1]:
            step()
        assert not any(name in vars(m) for m in model.modules() for name in ("forward", "mix", "embed", "head"))
        with torch.no_grad():
            torch.testing.assert_close(model(*inputs), bare(*inputs), rtol=0, atol=0)
    assert pab.stats(reference)["full"]["reused"] > 0


def report_rank(folder: str) -> None:
    """Write this rank's rank, group size and the group's all-reduced sum of ``rank + 1`` to ``rank<r>.txt``."""
    total = torch.tensor([dist.get_rank() + 1.0])
    dist.all_reduce(total)
    Path(folder, f"rank{dist.get_rank()}.txt").write_text(f"{dist.get_rank()} {dist.get_world_size()} {total.item()}")


def fail_on_last_rank() -> None:
    """The last rank raises while the others wait for it in a collective it never joins."""
    if dist.get_rank() == dist.get_world_size() - 1:
        raise ValueError(f"rank {dist.get_rank()} failed on purpose")
    dist.all_reduce(torch.ones(1))


def report_rank_then_abort_at_exit(folder: str) -> None:
    """:func:`report_rank`, then an exit handler that aborts the process as leftover gloo state was seen to."""
    import atexit
    import os

    report_rank(folder)
    atexit.register(os.abort)
