"""Turning PAB on and off for a model: :func:`enable`, :func:`disable`, :func:`pab`, :func:`stats`."""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator

from torch import nn

from videosys.core import AttentionAxis, BranchSite, branch_sites

from .cache import BranchCache, ReuseRule
from .config import PABConfig
from .state import PABState

__all__ = ["disable", "enable", "is_enabled", "pab", "stats"]

_ATTR = "_videosys_pab"
MLP_KIND = "mlp"


def _rule(site: BranchSite, config: PABConfig) -> tuple[str, ReuseRule | None]:
    """The kind a branch is counted under and its reuse rule, from the axis the branch declares."""
    axis = site.branch.axis
    if axis is not None:
        return axis.value, config.broadcast_for(axis)
    mlp = config.mlp
    return MLP_KIND, mlp if mlp is not None and site.layer in mlp.layers_for(site.block_axis) else None


def _check_mlp_layers(config: PABConfig, sites: list[BranchSite]) -> None:
    if config.mlp is None:
        return
    counts: dict[AttentionAxis, int] = {}
    for site in sites:
        counts[site.block_axis] = max(counts.get(site.block_axis, 0), site.layer + 1)
    missing = [axis.value for axis in config.mlp.named_axes() if axis not in counts]
    if missing:
        have = ", ".join(axis.value for axis in counts)
        raise ValueError(f"MLP reuse names {missing} blocks, but the model only has {have} blocks")
    for axis, count in counts.items():
        unknown = sorted(layer for layer in config.mlp.layers_for(axis) if layer >= count)
        if unknown:
            raise ValueError(
                f"MLP reuse layers {unknown} do not exist: the model has {count} {axis.value} blocks "
                f"(layers 0..{count - 1})"
            )


def enable(model: nn.Module, config: PABConfig) -> None:
    """Install Pyramid Attention Broadcast on every branch of a core-conforming backbone.

    Branches are found with :func:`videosys.core.branch_sites` and classified by the axis they
    declare, never by module names. Raises :class:`videosys.core.InterfaceError` for a model that does
    not follow the interfaces and ``ValueError`` for MLP layers the model does not have.
    """
    if not isinstance(config, PABConfig):
        raise TypeError(f"config must be a videosys.pab.PABConfig, got {type(config).__name__}")
    if is_enabled(model):
        raise RuntimeError(f"PAB is already enabled on this {type(model).__name__}; call disable(model) first")
    sites = branch_sites(model)
    _check_mlp_layers(config, sites)
    seen: set[int] = set()
    for site in sites:
        if id(site.branch) in seen:
            raise ValueError(
                f"block {site.block}'s {site.name} branch is shared with another block; PAB needs one each"
            )
        seen.add(id(site.branch))
    rules = [_rule(site, config) for site in sites]
    state = PABState(config, kinds=(kind for kind, _ in rules))
    state.caches = [BranchCache(site.branch, kind, rule, state) for site, (kind, rule) in zip(sites, rules)]
    for cache in state.caches:
        cache.install()
    model.__dict__[_ATTR] = state


def disable(model: nn.Module) -> None:
    """Remove PAB: every branch gets its own ``forward`` back and every cached tensor is dropped."""
    state = _state(model)
    state.finish_generation()
    for cache in state.caches:
        cache.uninstall()
    del model.__dict__[_ATTR]


def is_enabled(model: nn.Module) -> bool:
    """Whether :func:`enable` is in effect on ``model``."""
    return _ATTR in model.__dict__


@contextlib.contextmanager
def pab(model: nn.Module, config: PABConfig) -> Iterator[nn.Module]:
    """``with pab(model, config): ...`` enables PAB for the block and disables it on exit."""
    enable(model, config)
    try:
        yield model
    finally:
        disable(model)


def stats(model: nn.Module) -> dict[str, dict[str, int]]:
    """Branch calls made inside denoising steps since :func:`enable`, computed vs reused, per kind.

    ``{"spatial": {"computed": n, "reused": m}, ...}``, with the kinds the model has among ``"spatial"``,
    ``"temporal"``, ``"full"``, ``"cross"`` and ``"mlp"``.
    """
    return copy.deepcopy(_state(model).totals)


def _state(model: nn.Module) -> PABState:
    state = model.__dict__.get(_ATTR)
    if state is None:
        raise RuntimeError(f"PAB is not enabled on this {type(model).__name__}; call videosys.pab.enable first")
    return state
