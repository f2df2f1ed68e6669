"""Which backbone a config trains: a registered name or an importable factory."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from torch import nn

from videosys.core import check_backbone

from .config import ModelConfig
from .tiny import TinyLatte, TinyLatteConfig

__all__ = ["MODELS", "build_model"]


def _tiny_latte(**kwargs: Any) -> nn.Module:
    return TinyLatte(TinyLatteConfig(**kwargs))


MODELS: dict[str, Callable[..., nn.Module]] = {"tiny_latte": _tiny_latte}


def build_model(config: ModelConfig, **defaults: Any) -> nn.Module:
    """Build ``config.name`` with ``defaults`` (sizes the data implies) overridden by ``config.kwargs``.

    The model must be a :class:`videosys.core.STBackbone` taking ``(x_t, t, text, text_mask)``.
    """
    if ":" in config.name:
        module, _, attr = config.name.partition(":")
        factory = getattr(importlib.import_module(module), attr)
        model = factory(**config.kwargs)
    elif config.name in MODELS:
        model = MODELS[config.name](**{**defaults, **config.kwargs})
    else:
        raise ValueError(f"unknown model {config.name!r}; registered: {sorted(MODELS)}, or 'package.module:factory'")
    check_backbone(model)
    return model
