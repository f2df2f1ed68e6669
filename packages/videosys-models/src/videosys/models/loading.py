"""Reading the model folders the official checkpoints publish into VideoSys backbones.

A model folder holds ``config.json`` and the weights in one of two layouts, told apart by the weight
files present: ``"diffusers"`` (``diffusion_pytorch_model.safetensors``: ``transformer/`` of Latte-1 or
DiT-XL-2) or ``"transformers"`` (a Hugging Face ``PreTrainedModel``'s ``model.safetensors``: Open-Sora's
``OpenSora-STDiT-v3``); either may be sharded (``...safetensors.index.json``). Pickled ``.bin`` files are
a code-execution risk, so they are read only when the caller passes ``allow_bin=True``, and then with
``torch.load(weights_only=True)``.
A backbone reads a layout through ``from_<layout>_config`` and ``convert_<layout>_state_dict`` (official
key names to ours); every key must be used and every parameter filled, else :class:`CheckpointError`
lists the differences.
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
    "folder_layout",
    "hub_free_options",
    "load_backbone",
    "load_state_dict",
    "read_config",
    "rename_keys",
    "weight_files",
]

WEIGHTS_NAMES = {
    "diffusers": {"safetensors": "diffusion_pytorch_model.safetensors", "bin": "diffusion_pytorch_model.bin"},
    "transformers": {"safetensors": "model.safetensors", "bin": "pytorch_model.bin"},
}
"""Weight file names of each folder layout (each may instead be sharded: ``<name>.index.json``)."""

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


def hub_free_options(allow_bin: bool) -> dict[str, Any]:
    """Keyword arguments for a diffusers or transformers ``from_pretrained``: read the local folder only, never a
    model hub, and require safetensors unless ``allow_bin`` (the policy of every loader here, in one place)."""
    return {"use_safetensors": None if allow_bin else True, "local_files_only": True}


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


def folder_layout(folder: str | os.PathLike) -> str:
    """``"diffusers"`` or ``"transformers"``: the layout whose weight files ``folder`` holds."""
    folder = Path(folder)
    for layout, names in WEIGHTS_NAMES.items():
        if any((folder / n).is_file() or (folder / f"{n}.index.json").is_file() for n in names.values()):
            return layout
    present = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
    expected = " or ".join(names["safetensors"] for names in WEIGHTS_NAMES.values())
    raise CheckpointError(f"no {expected} in {folder} (files: {present})")


def weight_files(folder: str | os.PathLike, allow_bin: bool = False) -> list[Path]:
    """The weight files of a model folder: safetensors first (single or sharded), ``.bin`` only if allowed."""
    folder = Path(folder)
    names = WEIGHTS_NAMES[folder_layout(folder)]
    for suffix in ("safetensors",) + (("bin",) if allow_bin else ()):
        single = folder / names[suffix]
        if single.is_file():
            return [single]
        index = folder / f"{names[suffix]}.index.json"
        if index.is_file():
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
            return [folder / shard for shard in shards]
    raise CheckpointError(
        f"no {names['safetensors']} in {folder}; it holds pickled .bin weights, which are read only with "
        "allow_bin=True (trusted files only)"
    )


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
    """Build ``cls`` from a model folder (either layout) and load its weights, in eval mode on ``device``/``dtype``."""
    config = read_config(folder)
    layout = folder_layout(folder)
    build, convert = f"from_{layout}_config", f"convert_{layout}_state_dict"
    if not hasattr(cls, build) or not hasattr(cls, convert):
        readable = [name for name in WEIGHTS_NAMES if hasattr(cls, f"from_{name}_config")]
        raise CheckpointError(f"{folder} holds a {layout}-layout checkpoint; {cls.__name__} reads {readable}")
    model = getattr(cls, build)(config)
    state_dict = getattr(model, convert)(load_state_dict(folder, allow_bin))
    check_keys(model, state_dict, f"checkpoint {folder}")
    model.load_state_dict(state_dict)
    return model.to(device=device, dtype=dtype).eval()
