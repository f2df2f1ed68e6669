"""What each spawned rank runs; every check compares against a single-process computation or a closed form."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.distributed as dist
from dsp_testing import TinyVideoDiT, TokenConditionedDiT, tiny_inputs

from videosys.dsp import (
    MODES,
    average_gradients,
    comm_stats,
    deparallelize,
    gather,
    parallelize,
    reset_comm_stats,
    split,
    switch,
)

TOL = {"rtol": 1e-5, "atol": 1e-5}


def assert_grads_match(model: torch.nn.Module, reference: torch.nn.Module, where: str) -> None:
    """Averaged parameter gradients equal the single-process ones to 1e-5 of each tensor's scale (fp32 sums
    over shards and ranks in another order)."""
    for (name, param), ref in zip(model.named_parameters(), reference.parameters()):
        atol = 1e-5 * max(1.0, ref.grad.abs().max().item())
        torch.testing.assert_close(
            param.grad, ref.grad, rtol=1e-5, atol=atol, msg=lambda m, n=name: f"{where}, grad {n}: {m}"
        )


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


def backbone_matches_single_process(full: bool) -> None:
    torch.manual_seed(0)
    reference = TinyVideoDiT(full=full)
    cases = [(2, 3, 5), (1, 1, 8)] if not full else [(2, 3, 5)]
    for batch, frames, tokens in cases:
        inputs = tiny_inputs(batch, frames, tokens)
        weight = torch.randn(batch, frames, tokens, 4, generator=torch.Generator().manual_seed(1))
        reference.zero_grad()
        expected = reference(*inputs)
        (expected * weight).sum().backward()
        modes = ["dsp"] if full else MODES
        for resting in ("spatial", "temporal"):
            for mode in modes:
                model = parallelize(copy.deepcopy(reference), resting_axis=resting, mode=mode)
                model.zero_grad()
                out = model(*inputs)
                where = f"{mode=}, {resting=}, shape={(batch, frames, tokens)}"
                torch.testing.assert_close(out, expected, **TOL, msg=lambda m, w=where: f"{w}: {m}")
                (out * weight).sum().backward()
                average_gradients(model)
                assert_grads_match(model, reference, where)
        # Gradient checkpointing recomputes the sharded blocks in backward, after the gather.
        for resting in ("spatial", "temporal"):
            model = parallelize(copy.deepcopy(reference), resting_axis=resting)
            model.gradient_checkpointing = True
            model.zero_grad()
            (model(*inputs) * weight).sum().backward()
            average_gradients(model)
            assert_grads_match(model, reference, f"checkpointing, {resting=}")


def masked_attention_matches_single_process() -> None:
    """Key masks on spatial, temporal and full attention, given for the whole video, in every mode."""
    torch.manual_seed(0)
    reference = TinyVideoDiT(masked=True)
    batch, frames, tokens = 2, 3, 5
    g = torch.Generator().manual_seed(2)
    full_mask = torch.rand(batch, frames, tokens, generator=g) > 0.4
    full_mask[:, 0, :] = full_mask[:, :, 0] = True  # every frame and every position keeps a key
    weight = torch.randn(batch, frames, tokens, 4, generator=g)
    for mask in (full_mask, full_mask[:, :1, :]):  # whole; broadcast over frames (sliced or not, by resting axis)
        inputs = (*tiny_inputs(batch, frames, tokens), mask)
        _matches_in_every_mode(reference, inputs, weight, f"mask {tuple(mask.shape)}")


def _matches_in_every_mode(reference: torch.nn.Module, inputs: tuple, weight: torch.Tensor, case: str) -> None:
    """Output and averaged gradients of every mode and resting axis equal the single-process ones."""
    reference.zero_grad()
    expected = reference(*inputs)
    (expected * weight).sum().backward()
    for resting in ("spatial", "temporal"):
        for mode in MODES:
            model = parallelize(copy.deepcopy(reference), resting_axis=resting, mode=mode)
            model.zero_grad()
            out = model(*inputs)
            where = f"{mode=}, {resting=}, {case}"
            torch.testing.assert_close(out, expected, **TOL, msg=lambda m, w=where: f"{w}: {m}")
            (out * weight).sum().backward()
            average_gradients(model)
            assert_grads_match(model, reference, where)


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
    inputs = tiny_inputs(batch, frames, tokens)
    for model, modes in [(pairs_model, expected), (full_model, {"dsp": {"ulysses": (8, 4 * full_attentions * shard)}})]:
        for resting in ("spatial", "temporal"):
            for mode, attention_counts in modes.items():
                parallelize(model, resting_axis=resting, mode=mode)
                reset_comm_stats()
                out = model(*inputs)
                forward = {**attention_counts, "gather": (1, shard)}
                assert {k: tuple(v) for k, v in comm_stats().items()} == forward, (mode, resting, comm_stats())
                out.sum().backward()
                backward = {f"{kind}.backward": count for kind, count in attention_counts.items()}
                backward["split.backward"] = (1, shard)
                assert {k: tuple(v) for k, v in comm_stats().items()} == {**forward, **backward}, (mode, resting)
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
    with pytest.raises(ValueError, match=r"has 3 heads.*FULL attention in every mode"):
        parallelize(TinyVideoDiT(dim=24, heads=3, full=True), mode="dsp")
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
