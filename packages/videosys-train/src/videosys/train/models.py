"""Which backbone a config trains: a family of :mod:`videosys.models` at a named or explicit size, or a factory.

One implementation per model family: the trainer builds the very classes ``videosys.models`` loads
checkpoints into (:class:`~videosys.models.LatteTransformer`, :class:`~videosys.models.DiTTransformer`), so a
trained model exports to the layout the pipelines read. Sizes the data implies (latent channels, sample
size, frames, caption width, number of classes) are filled in from the data; the rest come from a named
config, overridden key by key by ``model.kwargs``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from torch import nn

from videosys.core import check_backbone

from .config import ConfigError, DataConfig, ModelConfig
from .data import CLASSES_FILE

__all__ = ["FAMILIES", "DataShape", "Family", "build_model", "check_model", "family_of", "model_kwargs"]


@dataclass(frozen=True)
class DataShape:
    """What the data and the frozen encoders fix about a model."""

    latent_channels: int
    sample_size: int
    """Latent height = width."""
    num_frames: int
    out_factor: int
    """Output channels per input channel: 2 with a learned sigma."""
    caption_dim: int | None = None
    num_classes: int | None = None


@dataclass(frozen=True)
class Family:
    """A model family: its backbone class, how it is conditioned, its named sizes and the data-implied kwargs."""

    cls: str
    """``"module:Class"`` in videosys.models, imported on first use."""
    conditioning: Literal["text", "class"]
    sizes: Mapping[str, Mapping[str, int]]
    implied: Callable[[DataShape], dict[str, int]]

    def backbone_class(self) -> type[nn.Module]:
        module, name = self.cls.split(":")
        return getattr(importlib.import_module(module), name)


def _latents(shape: DataShape) -> dict[str, int]:
    return {
        "in_channels": shape.latent_channels,
        "out_channels": shape.latent_channels * shape.out_factor,
        "sample_size": shape.sample_size,
    }


def _latte_implied(shape: DataShape) -> dict[str, int]:
    return {**_latents(shape), "video_length": shape.num_frames, "caption_channels": shape.caption_dim}


def _dit_implied(shape: DataShape) -> dict[str, int]:
    return {**_latents(shape), "num_classes": shape.num_classes}


FAMILIES: dict[str, Family] = {
    "latte": Family(
        "videosys.models.transformers.latte:LatteTransformer",
        "text",
        {
            "XL/2": {"num_layers": 28, "num_heads": 16, "head_dim": 72, "patch_size": 2},  # Latte-1
            "tiny": {"num_layers": 2, "num_heads": 4, "head_dim": 16, "patch_size": 2},
        },
        _latte_implied,
    ),
    "dit": Family(
        "videosys.models.transformers.dit:DiTTransformer",
        "class",
        {  # the DiT paper's configs (Peebles & Xie, Table 1)
            "XL/2": {"num_layers": 28, "num_heads": 16, "head_dim": 72, "patch_size": 2},
            "L/2": {"num_layers": 24, "num_heads": 16, "head_dim": 64, "patch_size": 2},
            "B/2": {"num_layers": 12, "num_heads": 12, "head_dim": 64, "patch_size": 2},
            "S/2": {"num_layers": 12, "num_heads": 6, "head_dim": 64, "patch_size": 2},
            "tiny": {"num_layers": 2, "num_heads": 2, "head_dim": 16, "patch_size": 2},
        },
        _dit_implied,
    ),
}

_TEXT = Family("", "text", {}, lambda shape: {})
"""A user's factory: conditioned on text, called with ``model.kwargs`` only."""


def family_of(config: ModelConfig) -> Family:
    """The family ``config.name`` names (a factory counts as a text-conditioned family of its own)."""
    if ":" in config.name:
        return _TEXT
    family = FAMILIES.get(config.name.lower())
    if family is None:
        raise ConfigError(
            f"model.name={config.name!r} is not a trainable model family; expected one of {sorted(FAMILIES)} "
            "or 'package.module:factory'"
        )
    return family


def check_model(config: ModelConfig, data: DataConfig) -> None:
    """Raise :class:`ConfigError` for a model name, size or data kind that cannot work together."""
    family = family_of(config)
    if family is not _TEXT and config.size is not None and config.size not in family.sizes:
        raise ConfigError(
            f"model.size={config.size!r} is not a size of {config.name}; expected one of {list(family.sizes)}"
        )
    for name in ("class_dropout", "caption_dropout"):
        if not 0.0 <= getattr(config, name) < 1.0:
            raise ConfigError(f"model.{name}={getattr(config, name)} must lie in [0, 1)")
    if family.conditioning == "class" and data.image_folder is None and not data.precomputed:
        raise ConfigError(
            f"model {config.name!r} is class-conditional: give data.image_folder (root/<class>/*.png), "
            "or preprocessed latents of one (data.precomputed=true)"
        )
    if family.conditioning == "class" and data.precomputed and not Path(data.csv).with_name(CLASSES_FILE).is_file():
        raise ConfigError(
            f"{data.csv} has no {CLASSES_FILE} beside it, so its class names are unknown ({config.name!r} is "
            "class-conditional): preprocess the image folder with videosys-train-preprocess, which writes it"
        )
    if family.conditioning == "text" and data.image_folder is not None:
        raise ConfigError(
            f"model {config.name!r} is text-conditioned: give data.csv (path,caption), not an image folder"
        )


def model_kwargs(config: ModelConfig, shape: DataShape) -> dict[str, Any]:
    """The constructor arguments of a family's backbone: named size, then data-implied sizes, then ``kwargs``."""
    family = family_of(config)
    sizes = family.sizes[config.size] if config.size is not None else {}
    return {**sizes, **family.implied(shape), **config.kwargs}


def build_model(config: ModelConfig, shape: DataShape) -> nn.Module:
    """Build the configured backbone; it must be a :class:`videosys.core.STBackbone`.

    A family is called with :func:`model_kwargs`; a factory as ``factory(**kwargs)`` (the data does not size it).
    """
    family = family_of(config)
    if family is _TEXT:
        module, _, attr = config.name.partition(":")
        model = getattr(importlib.import_module(module), attr)(**config.kwargs)
    else:
        model = family.backbone_class()(**model_kwargs(config, shape))
    check_backbone(model)
    return model
