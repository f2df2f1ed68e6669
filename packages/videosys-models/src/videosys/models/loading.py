"""Reading the diffusers-format folders the official checkpoints publish into VideoSys backbones.

A model folder (``transformer/`` of Latte-1 or DiT-XL-2) holds ``config.json`` and the weights as
``diffusion_pytorch_model.safetensors`` (or a sharded ``...safetensors.index.json``). Pickled ``.bin``
files are a code-execution risk, so they are read only when the caller passes ``allow_bin=True``, and
then with ``torch.load(weights_only=True)``.
Official key names are mapped to ours by each backbone's ``convert_diffusers_state_dict``; every key
must be used and every parameter filled, else :class:`CheckpointError` lists the differences.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import nn

__all__ = [
    "DIFFUSERS_BLOCK_RULES",
    "CheckpointError",
    "check_keys",
    "load_backbone",
    "load_state_dict",
    "read_config",
    "rename_keys",
    "weight_files",
]

WEIGHTS_NAME = "diffusion_pytorch_model"

Rule = tuple[str, "str | Callable[[re.Match[str]], str]"]

DIFFUSERS_BLOCK_RULES: list[Rule] = [
    (r"\.attn1\.to_out\.0\.", ".attn.inner.to_out."),
    (r"\.attn1\.to_([qkv])\.", r".attn.inner.to_\1."),
    (r"\.attn2\.to_out\.0\.", ".cross.inner.to_out."),
    (r"\.attn2\.to_([qkv])\.", r".cross.inner.to_\1."),
    (r"\.ff\.net\.0\.proj\.", ".mlp.inner.fc1."),
    (r"\.ff\.net\.2\.", ".mlp.inner.fc2."),
]
"""diffusers ``BasicTransformerBlock`` sublayer names to the core block's branches (``attn``, ``cross``, ``mlp``)."""


class CheckpointError(ValueError):
    """A checkpoint does not match the model: missing, unexpected or inconsistent weights, or no weights file."""


ModelT = TypeVar("ModelT", bound=nn.Module)


def rename_keys(state_dict: dict[str, torch.Tensor], rules: Iterable[Rule]) -> dict[str, torch.Tensor]:
    """Apply every ``(pattern, replacement)`` rule, in order, to every key (``re.sub`` semantics)."""
    rules = [(re.compile(pattern), repl) for pattern, repl in rules]
    renamed: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        new = key
        for pattern, repl in rules:
            new = pattern.sub(repl, new)
        if new in renamed:
            raise CheckpointError(f"two checkpoint keys map to {new!r} (the second is {key!r})")
        renamed[new] = value
    return renamed


def read_config(folder: str | os.PathLike) -> dict[str, Any]:
    """The folder's ``config.json`` as a dict."""
    path = Path(folder) / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"no config.json in {folder}: expected a diffusers model folder such as transformer/")
    return json.loads(path.read_text())


def weight_files(folder: str | os.PathLike, allow_bin: bool = False) -> list[Path]:
    """The weight files of a model folder: safetensors first (single or sharded), ``.bin`` only if allowed."""
    folder = Path(folder)
    for suffix in ("safetensors",) + (("bin",) if allow_bin else ()):
        single = folder / f"{WEIGHTS_NAME}.{suffix}"
        if single.is_file():
            return [single]
        index = folder / f"{WEIGHTS_NAME}.{suffix}.index.json"
        if index.is_file():
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
            return [folder / shard for shard in shards]
    present = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
    hint = ""
    if not allow_bin and any(name.endswith(".bin") for name in present):
        hint = "; it holds pickled .bin weights, which are read only with allow_bin=True (trusted files only)"
    raise CheckpointError(f"no {WEIGHTS_NAME}.safetensors in {folder} (files: {present}){hint}")


def load_state_dict(folder: str | os.PathLike, allow_bin: bool = False) -> dict[str, torch.Tensor]:
    """Every tensor of the folder's weight files, on CPU, as stored."""
    state_dict: dict[str, torch.Tensor] = {}
    for path in weight_files(folder, allow_bin):
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state_dict.update(load_file(path))
        else:
            state_dict.update(torch.load(path, map_location="cpu", weights_only=True))
    return state_dict


def check_keys(model: nn.Module, state_dict: dict[str, torch.Tensor], source: str) -> None:
    """Raise :class:`CheckpointError` listing missing and unexpected keys, or shape mismatches."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    problems = []
    if missing:
        problems.append(f"missing keys ({len(missing)}): {', '.join(missing)}")
    if unexpected:
        problems.append(f"unexpected keys ({len(unexpected)}): {', '.join(unexpected)}")
    shapes = [
        f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(expected[k].shape)}"
        for k, v in state_dict.items()
        if k in expected and v.shape != expected[k].shape
    ]
    if shapes:
        problems.append(f"shape mismatches ({len(shapes)}): {'; '.join(shapes)}")
    if problems:
        raise CheckpointError(f"{source} does not match {type(model).__name__}: " + " | ".join(problems))


def load_backbone(
    cls: type[ModelT],
    folder: str | os.PathLike,
    *,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
    allow_bin: bool = False,
) -> ModelT:
    """Build ``cls`` from a diffusers model folder and load its weights, in eval mode on ``device`` and ``dtype``."""
    config = read_config(folder)
    state_dict = cls.convert_diffusers_state_dict(load_state_dict(folder, allow_bin))
    model = cls.from_diffusers_config(config)
    check_keys(model, state_dict, f"checkpoint {folder}")
    model.load_state_dict(state_dict)
    return model.to(device=device, dtype=dtype).eval()
