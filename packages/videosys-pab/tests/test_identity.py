"""PAB that never reuses changes nothing, bit for bit, and disable restores the model exactly."""

import copy

import pytest
import torch
from pab_tiny import ddim_50, linear_30, sample, tiny_model

from videosys.core import check_backbone, denoising_step
from videosys.core.patching import method_wrappers
from videosys.pab import Broadcast, MLPReuse, PABConfig, disable, enable, is_enabled, pab, stats
from videosys.pab.cache import BranchCache

EVERY_STEP = PABConfig(
    spatial=Broadcast(1, window=(0, 1000)),
    temporal=Broadcast(1, window=(0, 1000)),
    cross=Broadcast(1, window=(0, 1000)),
)
PYRAMID = PABConfig(
    spatial=Broadcast(2, window=(100, 800)),
    temporal=Broadcast(3, window=(100, 800)),
    cross=Broadcast(6, window=(100, 800)),
    mlp=MLPReuse(layers=[0], at=[13, 17], steps=2),
)


def test_interval_one_is_bit_identical_over_a_full_loop():
    model = tiny_model()
    reference = sample(model, ddim_50(), guidance="batched")
    with pab(model, EVERY_STEP):
        out = sample(model, ddim_50(), guidance="batched")
        counts = stats(model)
    assert torch.equal(out, reference)
    assert all(c["reused"] == 0 for c in counts.values())
    assert counts["spatial"]["computed"] == 50 * 2  # 2 spatial blocks, one call per step


def test_interval_one_is_bit_identical_with_grid_rotary_embeddings():
    """Full attention with 3-D RoPE and spatial attention with 2-D RoPE: the grid reaches attention through PAB."""
    model = tiny_model(rows=2)
    g = torch.Generator().manual_seed(0)
    given = (torch.randn(1, 3, 6, 3, generator=g), torch.randn(1, 4, 8, generator=g))  # 3 frames of 2 x 3 tokens
    reference = sample(model, linear_30(), guidance="batched", given=given)
    plain = tiny_model(rows=2)
    for block in plain.blocks:
        block.attn.inner.rope = None
    assert not torch.allclose(sample(plain, linear_30(), guidance="batched", given=given), reference)
    with pab(model, PABConfig(full=Broadcast(1), spatial=Broadcast(1), cross=Broadcast(1))):
        out = sample(model, linear_30(), guidance="batched", given=given)
        counts = stats(model)
    assert torch.equal(out, reference)
    assert counts["full"] == {**counts["full"], "computed": 30 * 2, "reused": 0}


def test_enable_then_disable_is_bit_identical_and_restores_the_branches():
    model = tiny_model()
    reference = sample(model, linear_30())
    keys = list(model.state_dict())
    forwards = {name: type(m).forward for name, m in model.named_modules()}
    enable(model, PYRAMID)
    check_backbone(model)  # PAB keeps every Branch a Branch
    assert list(model.state_dict()) == keys
    changed = sample(model, linear_30())
    assert not torch.equal(changed, reference)  # PAB did act
    disable(model)
    assert not is_enabled(model)
    for name, module in model.named_modules():
        assert "forward" not in module.__dict__, name
        assert not any(k.startswith("_videosys") for k in module.__dict__), name
        assert type(module).forward is forwards[name]
    assert torch.equal(sample(model, linear_30()), reference)


def test_disable_keeps_a_forward_the_user_had_set():
    model = tiny_model()
    branch = model.blocks[0].attn
    calls = []

    def own_forward(*args, **kwargs):
        calls.append(1)
        return type(branch).forward(branch, *args, **kwargs)

    branch.forward = own_forward
    with pab(model, PYRAMID):
        sample(model, linear_30())
    assert calls  # PAB computed through the user's forward
    assert branch.__dict__["forward"] is own_forward


def test_without_a_step_context_every_call_computes():
    model = tiny_model()
    x, t, text = torch.randn(2, 3, 5, 3), torch.tensor([500.0, 500.0]), torch.randn(2, 4, 8)
    reference = model(x, t, text)
    with pab(model, PABConfig(spatial=Broadcast(2), temporal=Broadcast(2), cross=Broadcast(2))):
        for _ in range(3):
            assert torch.equal(model(x, t, text), reference)
        assert all(c == {"computed": 0, "reused": 0} for c in stats(model).values())


def test_enable_twice_and_disable_unenabled_raise():
    model = tiny_model()
    enable(model, PYRAMID)
    with pytest.raises(RuntimeError, match="already enabled"):
        enable(model, PYRAMID)
    disable(model)
    with pytest.raises(RuntimeError, match="not enabled"):
        disable(model)
    with pytest.raises(TypeError, match="PABConfig"):
        enable(model, {"spatial": 2})


def test_deepcopy_of_an_enabled_model_caches_on_its_own():
    model = tiny_model()
    enable(model, PYRAMID)
    twin = copy.deepcopy(model)
    out = sample(twin, linear_30())
    assert sum(c["computed"] + c["reused"] for c in stats(model).values()) == 0
    assert torch.equal(out, sample(model, linear_30()))


def test_a_call_whose_shape_differs_from_the_cached_one_recomputes():
    model = tiny_model()
    config = PABConfig(spatial=Broadcast(2), temporal=Broadcast(2), cross=Broadcast(2))
    small, big = torch.randn(1, 3, 5, 3), torch.randn(2, 3, 5, 3)
    text1, text2 = torch.randn(1, 4, 8), torch.randn(2, 4, 8)
    with denoising_step(1, 500.0, 10):
        expected = model(big, torch.full((2,), 500.0), text2)
    with pab(model, config):
        with denoising_step(0, 600.0, 10):
            model(small, torch.full((1,), 600.0), text1)
        with denoising_step(1, 500.0, 10):  # step 1 reuses by the rule, but the batch changed
            out = model(big, torch.full((2,), 500.0), text2)
        counts = stats(model)
    assert torch.equal(out, expected)
    assert all(c["reused"] == 0 for c in counts.values())


def test_a_branch_shared_between_blocks_is_refused():
    model = tiny_model()
    model.blocks[2].mlp = model.blocks[0].mlp
    with pytest.raises(ValueError, match="block 2's mlp branch is shared with another block"):
        enable(model, PYRAMID)
    assert not is_enabled(model)
    assert all("forward" not in m.__dict__ for m in model.modules())  # nothing left half-installed


def test_no_cached_tensor_outlives_its_generation():
    model = tiny_model()
    enable(model, PYRAMID)
    caches = [w for m in model.modules() for w in method_wrappers(m, "forward") if isinstance(w, BranchCache)]
    assert len(caches) == 12  # 4 blocks x (attn, cross, mlp)
    sample(model, ddim_50(), stop=20)  # a loop stopped in the middle keeps its cache ...
    assert any(cache.entries for cache in caches)
    sample(model, ddim_50())  # ... until the next generation, whose final step frees everything
    assert not any(cache.entries for cache in caches)
    sample(model, ddim_50(), stop=20)
    disable(model)
    assert not any(cache.entries for cache in caches)
