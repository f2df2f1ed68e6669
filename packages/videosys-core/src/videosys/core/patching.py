"""Wrapping one module instance's methods: the single mechanism DSP and PAB (and users' own tools) install by.

Both accelerations change how a module runs without changing what it is: its type, parameters and
state-dict keys stay, so checkpoints load the same and :func:`~videosys.core.check_backbone` still passes.
They do it by putting an instance attribute in front of a class method. Several wrappers may sit on one
method: how they nest is decided by each one's :class:`Nesting` level, never by the order they were
installed, so tools compose the same way in either order, and each :class:`MethodPatch` removes its own
wrapper without disturbing the others. A deep copy of a module (an EMA copy, say) copies its wrappers,
and they call the copied module.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

__all__ = ["MethodPatch", "Nesting", "method_wrappers", "wrap_method"]

Wrapper = Callable[..., Any]
"""``wrapper(inner, *args, **kwargs)``: ``inner`` runs the next wrapper in, or the method itself."""


class Nesting(IntEnum):
    """How far out a wrapper sits on a method: a higher level wraps the lower ones."""

    LAYOUT = 0
    """Changes where the data lives (sequence-parallel switches and exchanges)."""
    CACHE = 10
    """Returns a kept output instead of running: outside the layout, so a reused call skips its communication."""


@dataclass(eq=False)
class _Layer:
    wrapper: Wrapper
    nesting: int


class _Wrapped:
    """The instance attribute standing in for ``type(owner).<name>``: runs the layers, outermost first.

    The class method is looked up at call time (not captured), so a deep copy calls its own module.
    """

    def __init__(self, owner: object, name: str, base: Callable[..., Any] | None) -> None:
        self.owner = owner
        self.name = name
        self.base = base
        """An instance attribute that was there before the first wrapper; it is put back after the last."""
        self.layers: list[_Layer] = []
        """Innermost first."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        call = self.base if self.base is not None else getattr(type(self.owner), self.name).__get__(self.owner)
        for layer in self.layers:
            call = functools.partial(layer.wrapper, call)
        return call(*args, **kwargs)

    def add(self, layer: _Layer) -> None:
        # Stable: among equal levels the later one goes outside, as a plain override would.
        position = sum(1 for existing in self.layers if existing.nesting <= layer.nesting)
        self.layers.insert(position, layer)


@dataclass(frozen=True, eq=False)
class MethodPatch:
    """One installed wrapper; :meth:`remove` takes it (and only it) off again."""

    owner: object
    name: str
    layer: _Layer

    def remove(self) -> None:
        wrapped = vars(self.owner).get(self.name)
        if not isinstance(wrapped, _Wrapped) or not any(layer is self.layer for layer in wrapped.layers):
            raise RuntimeError(f"this wrapper of {type(self.owner).__name__}.{self.name} was already removed")
        wrapped.layers = [layer for layer in wrapped.layers if layer is not self.layer]
        if wrapped.layers:
            return
        if wrapped.base is None:
            delattr(self.owner, self.name)
        else:
            setattr(self.owner, self.name, wrapped.base)


def wrap_method(owner: object, name: str, wrapper: Wrapper, nesting: Nesting | int) -> MethodPatch:
    """Route calls of ``owner.<name>`` through ``wrapper(inner, *args, **kwargs)`` on this instance only.

    ``owner``'s class must define ``name`` as a method. An instance attribute of that name that another
    tool set in its own way is kept as the innermost call and restored when the last wrapper goes.
    """
    if not callable(getattr(type(owner), name, None)):
        raise AttributeError(f"{type(owner).__name__} has no method {name!r} to wrap")
    wrapped = vars(owner).get(name)
    if not isinstance(wrapped, _Wrapped):
        wrapped = _Wrapped(owner, name, base=wrapped)
        setattr(owner, name, wrapped)
    layer = _Layer(wrapper, int(nesting))
    wrapped.add(layer)
    return MethodPatch(owner, name, layer)


def method_wrappers(owner: object, name: str) -> list[Wrapper]:
    """The wrappers on ``owner.<name>``, innermost first (empty when it runs the class method directly)."""
    wrapped = vars(owner).get(name)
    return [layer.wrapper for layer in wrapped.layers] if isinstance(wrapped, _Wrapped) else []
