"""videosys.core.patching: wrappers nest by level whatever the install order, and come off one by one."""

from __future__ import annotations

import copy
import itertools

import pytest
import torch
from torch import nn

from videosys.core.patching import Nesting, method_wrappers, wrap_method


class Scale(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.tensor(2.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weight


def tracer(log: list[str], name: str):
    """A wrapper that records when it is entered and left, and adds 1 on the way out."""

    def wrapper(inner, x):
        log.append(f"{name}>")
        out = inner(x) + 1
        log.append(f"<{name}")
        return out

    return wrapper


def test_levels_decide_the_nesting_whatever_the_install_order():
    for order in itertools.permutations([("cache", Nesting.CACHE), ("layout", Nesting.LAYOUT), ("user", 5)]):
        module, log = Scale(), []
        for name, level in order:
            wrap_method(module, "forward", tracer(log, name), level)
        assert module(torch.tensor(1.0)).item() == 2 + 3
        assert log == ["cache>", "user>", "layout>", "<layout", "<user", "<cache"], order


def test_equal_levels_nest_later_outside():
    module, log = Scale(), []
    wrap_method(module, "forward", tracer(log, "first"), Nesting.LAYOUT)
    wrap_method(module, "forward", tracer(log, "second"), Nesting.LAYOUT)
    module(torch.tensor(1.0))
    assert log[:2] == ["second>", "first>"]


@pytest.mark.parametrize("removal", list(itertools.permutations(range(3))))
def test_each_patch_removes_only_its_own_wrapper_in_any_order(removal):
    module, log = Scale(), []
    patches = [wrap_method(module, "forward", tracer(log, str(i)), level) for i, level in enumerate([0, 10, 5])]
    remaining = {0, 1, 2}
    for i in removal:
        patches[i].remove()
        remaining.discard(i)
        log.clear()
        assert module(torch.tensor(1.0)).item() == 2 + len(remaining)
        assert sorted(entry for entry in log if entry.endswith(">")) == sorted(f"{j}>" for j in remaining)
    assert "forward" not in vars(module)  # the class method again, nothing left on the instance
    with pytest.raises(RuntimeError, match="already removed"):
        patches[0].remove()


def test_an_instance_attribute_set_another_way_is_kept_inside_and_restored():
    module, log = Scale(), []
    own = module.forward
    module.forward = lambda x: own(x) * 10  # a user's monkeypatch
    patch = wrap_method(module, "forward", tracer(log, "w"), Nesting.CACHE)
    assert module(torch.tensor(1.0)).item() == 21
    patch.remove()
    assert module(torch.tensor(1.0)).item() == 20


def test_a_deep_copy_calls_its_own_module_and_removes_independently():
    module, log = Scale(), []
    patch = wrap_method(module, "forward", tracer(log, "w"), Nesting.LAYOUT)
    copied, copied_patch = copy.deepcopy((module, patch))
    with torch.no_grad():
        copied.weight.fill_(5.0)
    assert copied(torch.tensor(1.0)).item() == 6 and module(torch.tensor(1.0)).item() == 3
    copied_patch.remove()
    assert copied(torch.tensor(1.0)).item() == 5 and module(torch.tensor(1.0)).item() == 3
    assert len(method_wrappers(module, "forward")) == 1 and method_wrappers(copied, "forward") == []


def test_gradients_flow_through_the_wrappers_and_keys_stay():
    module = Scale()
    keys = set(module.state_dict())
    wrap_method(module, "forward", lambda inner, x: inner(x) * 3, Nesting.LAYOUT)
    module(torch.tensor(1.0)).backward()
    assert module.weight.grad.item() == 3 and set(module.state_dict()) == keys and type(module) is Scale


def test_a_missing_method_is_named():
    with pytest.raises(AttributeError, match="Scale has no method 'fwd'"):
        wrap_method(Scale(), "fwd", lambda inner: inner(), Nesting.LAYOUT)
