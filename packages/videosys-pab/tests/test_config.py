"""Bad configurations fail early with errors that name the bad value and what was expected."""

import pytest
from pab_tiny import linear_30, sample, tiny_model

from videosys.core import InterfaceError
from videosys.pab import Broadcast, MLPReuse, PABConfig, enable


@pytest.mark.parametrize("interval", [0, -2, 1.5, True])
def test_interval_must_be_a_positive_integer(interval):
    with pytest.raises(ValueError, match=rf"interval must be an integer >= 1.*{interval!r}"):
        Broadcast(interval)


@pytest.mark.parametrize(
    "window,unit,match",
    [
        ((100, 1200), "timestep", r"timestep window \(100, 1200\) is out of range: expected 0 <= low < high <= 1000"),
        ((-5, 800), "timestep", "out of range"),
        ((800, 100), "timestep", "low < high"),
        ((0.2, 1.5), "fraction", r"fraction window .* expected 0 <= low < high <= 1"),
        ((0.5, 0.5), "fraction", "low < high"),
        ((1, 2, 3), "timestep", "must be a pair"),
    ],
)
def test_window_out_of_range(window, unit, match):
    with pytest.raises(ValueError, match=match):
        Broadcast(2, window=window, unit=unit)


def test_unknown_units_and_types():
    with pytest.raises(ValueError, match="'timestep' or 'fraction'"):
        Broadcast(2, unit="seconds")
    with pytest.raises(ValueError, match="'step' or 'fraction'"):
        MLPReuse([0], at=[3], unit="timestep")
    with pytest.raises(TypeError, match=r"PABConfig.spatial must be a Broadcast or None, got int"):
        PABConfig(spatial=2)
    with pytest.raises(TypeError, match="PABConfig.mlp must be an MLPReuse"):
        PABConfig(mlp=Broadcast(2))


def test_bad_mlp_reuse_values():
    with pytest.raises(ValueError, match="block index >= 0"):
        MLPReuse([-1], at=[3])
    with pytest.raises(ValueError, match="steps must be an integer >= 1"):
        MLPReuse([0], at=[3], steps=0)
    with pytest.raises(ValueError, match="at least one step position"):
        MLPReuse([0], at=[])
    with pytest.raises(ValueError, match="position 2.5 must be a step index"):
        MLPReuse([0], at=[2.5])
    with pytest.raises(ValueError, match=r"fraction in \[0, 1\)"):
        MLPReuse([0], at=[1.2], unit="fraction")
    with pytest.raises(ValueError, match="'cross' is not one"):
        MLPReuse({"cross": [0]}, at=[3])
    with pytest.raises(ValueError, match="unknown attention axis 'sideways'"):
        MLPReuse({"sideways": [0]}, at=[3])


def test_mlp_layer_the_model_does_not_have():
    model = tiny_model()  # 2 spatial and 2 temporal blocks: layers 0..1 per axis
    with pytest.raises(ValueError, match=r"MLP reuse layers \[2, 5\] do not exist: the model has 2 spatial blocks"):
        enable(model, PABConfig(mlp=MLPReuse([0, 2, 5], at=[3])))
    with pytest.raises(ValueError, match=r"names \['full'\] blocks, but the model only has spatial, temporal blocks"):
        enable(model, PABConfig(mlp=MLPReuse({"full": [0]}, at=[3])))
    enable(model, PABConfig(mlp=MLPReuse({"temporal": [1]}, at=[3])))  # fine


def test_mlp_position_outside_the_loop_raises_when_the_loop_starts():
    model = tiny_model()
    enable(model, PABConfig(mlp=MLPReuse([0], at=[13, 40])))
    for _ in range(2):  # the error leaves no state behind: it is raised again, not skipped the second time
        with pytest.raises(ValueError, match=r"give steps \[13, 40\], but this loop has 30 steps \(0..29\)"):
            sample(model, linear_30())


def test_model_off_the_interfaces_is_refused():
    from torch import nn

    with pytest.raises(InterfaceError, match="not a videosys.core.STBackbone"):
        enable(nn.Linear(2, 2), PABConfig())
