"""Open-Sora 1.2's rectified flow against its published formula, closed-form flows, a hand-written loop and the
original sampler's saved output."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from videosys.core import current_step
from videosys.models.schedulers import RectifiedFlow


def published_timesteps(height: int, width: int, frames: int, steps: int) -> list[float]:
    """Open-Sora 1.2's shift, written out: t' = r t / (1 + (r - 1) t), r = sqrt(HW / 512^2) sqrt(frames // 17 * 5)."""
    latent_frames = 1 if frames == 1 else frames // 17 * 5
    r = math.sqrt(height * width / 512**2) * math.sqrt(latent_frames)
    return [1000 * r * t / (1 + (r - 1) * t) for t in (1 - i / steps for i in range(steps))]


def test_golden_timesteps_480p_51_frames_30_steps():
    timesteps = RectifiedFlow().timesteps(height=480, width=854, num_frames=51)
    assert timesteps.shape == (30,)
    torch.testing.assert_close(timesteps, torch.tensor(published_timesteps(480, 854, 51, 30), dtype=torch.float64))
    for index, value in ((0, 1000.0), (1, 992.9304), (2, 985.4659), (-1, 143.105)):
        assert timesteps[index].item() == pytest.approx(value, abs=5e-5)


def test_single_frame_and_untransformed_grids():
    torch.testing.assert_close(
        RectifiedFlow(num_steps=10).timesteps(height=720, width=1280, num_frames=1),
        torch.tensor(published_timesteps(720, 1280, 1, 10), dtype=torch.float64),
    )
    plain = RectifiedFlow(num_steps=4, use_timestep_transform=False).timesteps(height=480, width=854, num_frames=51)
    assert plain.tolist() == [1000.0, 750.0, 500.0, 250.0]
    discrete = RectifiedFlow(num_steps=3, use_timestep_transform=False, use_discrete_timesteps=True)
    assert discrete.timesteps(height=64, width=64, num_frames=1).tolist() == [1000.0, 667.0, 333.0]


def towards(target_cond: torch.Tensor, target_uncond: torch.Tensor, calls: list):
    """The exact rectified-flow velocity to a single point, ``(x0 - z) / (t / 1000)``, per CFG half."""

    def model_fn(z, t, x_mask):
        calls.append((t.clone(), None if x_mask is None else x_mask.clone(), current_step()))
        target = torch.cat([target_cond, target_uncond])
        velocity = (target - z) / (t / 1000).reshape(-1, 1, 1, 1, 1)
        return torch.cat([velocity, torch.full_like(velocity, float("nan"))], dim=1)  # variance channels unused

    return model_fn


def test_exact_velocity_lands_on_the_guided_target():
    """With the exact velocity every Euler step shrinks z - target by t_next / t, so the end is the target."""
    gen = torch.Generator().manual_seed(0)
    cond, uncond, z = (torch.randn(2, 4, 3, 2, 2, generator=gen) for _ in range(3))
    calls: list = []
    sampler = RectifiedFlow(num_steps=7, guidance_scale=4.0)
    out = sampler.sample(towards(cond, uncond, calls), z, height=480, width=854, num_frames=51, progress=False)
    torch.testing.assert_close(out, uncond + 4.0 * (cond - uncond), rtol=1e-5, atol=1e-5)
    expected_t = sampler.timesteps(height=480, width=854, num_frames=51).float()
    assert [c[0][0].item() for c in calls] == pytest.approx(expected_t.tolist())
    assert all(c[0].shape == (4,) and c[1] is None for c in calls)
    assert [(c[2].index, c[2].num_steps) for c in calls] == [(i, 7) for i in range(7)]


def test_euler_steps_equal_a_hand_written_loop():
    """A non-linear velocity field: every Euler step, CFG combination and dt as written out here."""
    gen = torch.Generator().manual_seed(1)
    z0 = torch.randn(2, 4, 2, 3, 3, generator=gen)
    shift = torch.randn(2, 4, 2, 3, 3, generator=gen)

    def field(z, t):  # conditional half: +shift; unconditional half: -shift
        scale = (t / 1000).reshape(-1, 1, 1, 1, 1)
        return torch.sin(z) * scale + torch.cat([shift, -shift]) * (1 - scale)

    sampler = RectifiedFlow(num_steps=5, guidance_scale=7.0)
    out = sampler.sample(lambda z, t, m: field(z, t), z0, height=240, width=426, num_frames=34, progress=False)

    ts = [*published_timesteps(240, 426, 34, 5), 0.0]
    z = z0.clone()
    for t, t_next in itertools.pairwise(ts):
        v = field(torch.cat([z, z]), torch.full((4,), t))
        v_cond, v_uncond = v.chunk(2)
        z = z + (v_uncond + 7.0 * (v_cond - v_uncond)) * (t - t_next) / 1000
    torch.testing.assert_close(out, z, rtol=1e-5, atol=1e-5)


def test_given_frames_are_held_and_edited_frames_join_at_their_timestep():
    """Frame 0 given (mask 0), frame 1 re-generated from t = 500 (mask 0.5), frames 2-3 generated (mask 1)."""
    gen = torch.Generator().manual_seed(2)
    reference = torch.randn(1, 4, 4, 2, 2, generator=gen)
    target = torch.randn(1, 4, 4, 2, 2, generator=gen)
    mask = torch.tensor([[0.0, 0.5, 1.0, 1.0]])
    calls: list = []
    sampler = RectifiedFlow(num_steps=6, guidance_scale=3.0, use_timestep_transform=False)
    out = sampler.sample(
        towards(target, target, calls), reference.clone(), height=64, width=64, num_frames=1, mask=mask,
        generator=torch.Generator().manual_seed(3), progress=False,
    )
    assert torch.equal(out[:, :, 0], reference[:, :, 0])  # the given frame, untouched
    torch.testing.assert_close(out[:, :, 1:], target[:, :, 1:], rtol=1e-5, atol=1e-5)
    for t, x_mask, _ in calls:
        assert x_mask.shape == (2, 4)  # repeated for the CFG halves
        assert x_mask[:, 0].tolist() == [False, False]
        assert x_mask[:, 1].tolist() == [t[0].item() <= 500] * 2
        assert x_mask[:, 2:].all()


def test_an_edited_frame_enters_noised_to_its_timestep():
    """On its first step a frame with mask 0.5 is the reference noised to that step's t, drawn from the generator."""
    reference = torch.randn(1, 4, 2, 2, 2, generator=torch.Generator().manual_seed(4))
    seen: list = []

    def model_fn(z, t, x_mask):
        seen.append((t[0].item(), z[:1].clone()))
        return torch.zeros_like(z)

    sampler = RectifiedFlow(num_steps=4, guidance_scale=1.0, use_timestep_transform=False)
    sampler.sample(model_fn, reference.clone(), height=64, width=64, num_frames=1, mask=torch.tensor([[0.0, 0.5]]),
                   generator=torch.Generator().manual_seed(5), progress=False)
    noise_gen = torch.Generator().manual_seed(5)
    noises = [torch.randn(reference.shape, generator=noise_gen) for _ in range(4)]
    assert [t for t, _ in seen] == [1000.0, 750.0, 500.0, 250.0]
    s = 1 - 500 / 1000  # steps 0, 1 hold frame 1 clean; step 2 (t = 500) noises it with that step's draw
    assert torch.equal(seen[1][1][:, :, 1], reference[:, :, 1])
    torch.testing.assert_close(seen[2][1][:, :, 1], s * reference[:, :, 1] + (1 - s) * noises[2][:, :, 1])


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="num_steps must be >= 1, got 0"):
        RectifiedFlow(num_steps=0)
    with pytest.raises(ValueError, match="num_frames must be >= 1, got 0"):
        RectifiedFlow().timesteps(height=480, width=854, num_frames=0)
    with pytest.raises(ValueError, match="num_frames == 1 or >= 17.*got 9"):
        RectifiedFlow().timesteps(height=480, width=854, num_frames=9)
    z = torch.zeros(1, 4, 3, 2, 2)
    with pytest.raises(ValueError, match=r"mask must be \(B, T\) = \(1, 3\)"):
        RectifiedFlow().sample(lambda z, t, m: z, z, height=64, width=64, num_frames=1, mask=torch.ones(1, 2))
    with pytest.raises(ValueError, match="mask values must lie in"):
        RectifiedFlow().sample(lambda z, t, m: z, z, height=64, width=64, num_frames=1, mask=torch.full((1, 3), 2.0))


def test_equals_the_original_sampler():
    """Open-Sora 1.2's own RFLOW.sample on a closed-form field (fixtures/opensora/rflow, see its README)."""
    folder = Path(__file__).parent / "fixtures" / "opensora" / "rflow"
    stored = load_file(folder / "io.safetensors")
    with safe_open(folder / "io.safetensors", "pt") as f:
        seed = int(f.metadata()["seed"])
    weight = stored["weight"]
    y = torch.tensor([1.0, 1.0, -1.0, -1.0])  # conditional half +1, unconditional -1

    def model_fn(z, t, x_mask):
        v = torch.einsum("dc,bcthw->bdthw", weight, torch.sin(z)) * (t / 1000).reshape(-1, 1, 1, 1, 1)
        v = v + y.reshape(-1, 1, 1, 1, 1)
        if x_mask is not None:
            v = v + 0.1 * x_mask[:, None, :, None, None].float()
        return torch.cat([v, torch.zeros_like(v)], dim=1)

    size = {"height": 480, "width": 854, "num_frames": 51}
    for name, mask in (("plain", None), ("masked", stored["mask"])):
        out = RectifiedFlow().sample(
            model_fn, stored["z0"].clone(), **size, mask=mask, generator=torch.Generator().manual_seed(seed),
            progress=False,
        )
        torch.testing.assert_close(out, stored[name], rtol=1e-5, atol=1e-5)
