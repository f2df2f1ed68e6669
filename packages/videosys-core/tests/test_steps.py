import pytest
import torch

from videosys.core import current_step, denoising_step


def test_step_is_visible_inside_and_restored_after():
    assert current_step() is None
    with denoising_step(2, torch.tensor([750.0, 750.0]), 10) as step:
        assert current_step() == step
        assert (step.index, step.timestep, step.num_steps, step.fraction, step.is_first) == (2, 750.0, 10, 0.2, False)
        with denoising_step(0, 999, 5):
            assert current_step().is_first
        assert current_step() is step
    assert current_step() is None


def test_step_is_restored_when_the_model_raises():
    with pytest.raises(RuntimeError):
        with denoising_step(0, 10, 3):
            raise RuntimeError("boom")
    assert current_step() is None


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((3, 10.0, 3), "step index 3 is outside the loop of 3 steps"),
        ((0, 10.0, 0), "num_steps must be >= 1, got 0"),
        ((0, 1001.0, 5), "timestep 1001.0 is outside the 0..1000 scale"),
        ((0, torch.tensor([1.0, 2.0]), 5), "different values"),
    ],
)
def test_bad_steps_are_rejected(args, message):
    with pytest.raises(ValueError, match=message):
        with denoising_step(*args):
            pass
