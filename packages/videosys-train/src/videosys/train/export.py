"""Export a trained class-conditional DiT as a folder ``videosys.models.load("dit", DIR)`` reads.

The layout is the published ``facebook/DiT-XL-2-256`` one: ``transformer/`` (diffusers ``config.json`` and
``diffusion_pytorch_model.safetensors`` in diffusers' key names), ``vae/`` (the VAE the run trained with),
``scheduler/`` (DDIM over the training noise schedule) and ``model_index.json``, whose ``id2label`` carries the
class names (the image folder's sub-folders) so ``videosys generate --class NAME`` works. The weights are the
EMA's where the run kept one.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import torch

from .checkpoint import RUNNING_STATES, latest_checkpoint
from .config import ConfigError, TrainConfig, config_from_dict
from .models import DataShape, build_model, family_of, model_kwargs

__all__ = ["export_dit", "main", "to_diffusers_dit"]

_DIT_RULES = [
    (r"^patch_embed\.proj\.", "pos_embed.proj."),
    (r"^blocks\.(\d+)\.adaLN_modulation\.1\.", r"transformer_blocks.\1.norm1.linear."),
    (r"^blocks\.(\d+)\.attn\.inner\.to_out\.", r"transformer_blocks.\1.attn1.to_out.0."),
    (r"^blocks\.(\d+)\.attn\.inner\.to_([qkv])\.", r"transformer_blocks.\1.attn1.to_\2."),
    (r"^blocks\.(\d+)\.mlp\.inner\.fc1\.", r"transformer_blocks.\1.ff.net.0.proj."),
    (r"^blocks\.(\d+)\.mlp\.inner\.fc2\.", r"transformer_blocks.\1.ff.net.2."),
    (r"^final\.adaLN_modulation\.1\.", "proj_out_1."),
    (r"^final\.linear\.", "proj_out_2."),
]
"""Our DiT key names to diffusers' (the inverse of ``DiTTransformer.convert_diffusers_state_dict``)."""

_SHARED_EMBEDDERS = {"t_embedder.": "timestep_embedder.", "y_embedder.": "class_embedder."}


def to_diffusers_dit(state_dict: dict[str, torch.Tensor], num_layers: int) -> dict[str, torch.Tensor]:
    """Rename a DiT state dict to diffusers' ``DiTTransformer2DModel`` keys.

    diffusers keeps a copy of the shared timestep and class embedders in every block; each gets the same tensor.
    """
    from videosys.models.loading import rename_keys

    renamed = rename_keys(
        {k: v for k, v in state_dict.items() if not k.startswith(tuple(_SHARED_EMBEDDERS))}, _DIT_RULES
    )
    for key, value in state_dict.items():
        prefix = next((p for p in _SHARED_EMBEDDERS if key.startswith(p)), None)
        if prefix is not None:
            rest = _SHARED_EMBEDDERS[prefix] + key[len(prefix) :]
            for i in range(num_layers):
                renamed[f"transformer_blocks.{i}.norm1.emb.{rest}"] = value.clone()
    return renamed


def _read_model_weights(path: Path) -> dict[str, torch.Tensor]:
    """A Booster model checkpoint: one file (unsharded plugins) or a folder of shards with an index."""
    if path.is_file():
        return torch.load(path, map_location="cpu", weights_only=True)
    index = next(iter(sorted(path.glob("*.index.json"))), None)
    if index is None:
        raise ConfigError(f"{path} is neither a weights file nor a sharded checkpoint folder (no *.index.json)")
    state: dict[str, torch.Tensor] = {}
    for name in sorted(set(json.loads(index.read_text())["weight_map"].values())):
        if name.endswith(".safetensors"):
            from safetensors.torch import load_file

            state.update(load_file(path / name))
        else:
            state.update(torch.load(path / name, map_location="cpu", weights_only=True))
    return state


def _vae_shape(vae: Path, config: TrainConfig, num_classes: int) -> DataShape:
    """The data shape the run had, read from the VAE's ``config.json`` (no diffusers needed)."""
    vae_config = json.loads((vae / "config.json").read_text())
    factor = 2 ** (len(vae_config["block_out_channels"]) - 1)
    return DataShape(
        latent_channels=vae_config["latent_channels"],
        sample_size=config.data.size // factor,
        num_frames=1,
        out_factor=2 if config.objective.learn_sigma else 1,
        num_classes=num_classes,
    )


def _diffusers_config(kwargs: dict[str, Any]) -> dict[str, Any]:
    from videosys.models import DiTTransformer

    defaults = {k: p.default for k, p in inspect.signature(DiTTransformer).parameters.items()}
    k = {**defaults, **kwargs}
    return {
        "_class_name": "DiTTransformer2DModel",
        "num_attention_heads": k["num_heads"],
        "attention_head_dim": k["head_dim"],
        "in_channels": k["in_channels"],
        "out_channels": k["out_channels"],
        "num_layers": k["num_layers"],
        "patch_size": k["patch_size"],
        "sample_size": k["sample_size"],
        "num_embeds_ada_norm": k["num_classes"],
        "attention_bias": k["attention_bias"],
        "norm_eps": k["norm_eps"],
        "norm_type": "ada_norm_zero",
        "activation_fn": "gelu-approximate",
        "norm_elementwise_affine": False,
    }


def _scheduler_config(config: TrainConfig) -> dict[str, Any]:
    """DDIM over the training schedule: ``GaussianDiffusion.linear`` scales 1e-4..0.02 by ``1000 / steps``."""
    steps = config.objective.num_timesteps
    scale = 1000 / steps
    return {
        "_class_name": "DDIMScheduler",
        "num_train_timesteps": steps,
        "beta_start": scale * 1e-4,
        "beta_end": scale * 0.02,
        "beta_schedule": "linear",
        "prediction_type": "epsilon" if config.objective.prediction == "epsilon" else "v_prediction",
        "clip_sample": False,
        "set_alpha_to_one": True,
        "steps_offset": 0,
    }


def _write_json(path: Path, value: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, indent=2) + "\n")


def export_dit(checkpoint: str | os.PathLike, out: str | os.PathLike, vae: str | os.PathLike | None = None) -> Path:
    """Write the DiT of a training checkpoint (EMA weights if kept) to ``out``; return ``out``.

    ``checkpoint`` is a checkpoint folder or a folder of them (the latest is taken); ``vae`` overrides the
    VAE folder the run recorded.
    """
    from safetensors.torch import save_file

    checkpoint = Path(checkpoint)
    if not (checkpoint / RUNNING_STATES).is_file():
        latest = latest_checkpoint(checkpoint)
        if latest is None:
            raise ConfigError(f"{checkpoint} is not a checkpoint folder and holds none (no {RUNNING_STATES})")
        checkpoint = latest
    states = json.loads((checkpoint / RUNNING_STATES).read_text())
    config = config_from_dict(states["config"])
    if family_of(config.model).conditioning != "class" or config.objective.kind != "ddpm":
        raise ConfigError(
            f"{checkpoint} trained {config.model.name!r} with objective {config.objective.kind!r}; export writes "
            "class-conditional DDPM models (model.name=dit) for videosys.models' DiT pipeline"
        )
    vae = Path(vae or config.vae.path or "")
    if config.vae.kind != "diffusers" or not (vae / "config.json").is_file():
        raise ConfigError(
            f"no VAE folder at {str(vae)!r}: the DiT pipeline decodes with the run's AutoencoderKL; pass --vae DIR"
        )
    classes = states["classes"]
    shape = _vae_shape(vae, config, len(classes))
    kwargs = model_kwargs(config.model, shape)
    model = build_model(config.model, shape)
    model.load_state_dict(_read_model_weights(checkpoint / "model"))
    ema = checkpoint / "ema.pt"
    if ema.is_file():
        shadow = torch.load(ema, map_location="cpu", weights_only=True)
        model.load_state_dict({**model.state_dict(), **shadow})
    out = Path(out)
    weights = to_diffusers_dit({k: v.contiguous() for k, v in model.state_dict().items()}, kwargs["num_layers"])
    (out / "transformer").mkdir(parents=True, exist_ok=True)
    save_file(weights, out / "transformer" / "diffusion_pytorch_model.safetensors")
    _write_json(out / "transformer" / "config.json", _diffusers_config(kwargs))
    _write_json(out / "scheduler" / "scheduler_config.json", _scheduler_config(config))
    shutil.copytree(vae, out / "vae", dirs_exist_ok=True)
    index = {
        "_class_name": "DiTPipeline",
        "transformer": ["diffusers", "DiTTransformer2DModel"],
        "vae": ["diffusers", "AutoencoderKL"],
        "scheduler": ["diffusers", "DDIMScheduler"],
        "id2label": {str(i): name for i, name in enumerate(classes)},
    }
    _write_json(out / "model_index.json", index)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="videosys-train-export",
        description="Export a trained DiT as a folder videosys.models.load('dit', OUT) reads.",
    )
    parser.add_argument("checkpoint", help="a checkpoint folder, or the checkpoints folder (takes the latest)")
    parser.add_argument("--out", required=True, type=Path, help="the folder to write")
    parser.add_argument("--vae", type=Path, help="the VAE folder, if not the one the run recorded")
    args = parser.parse_args(argv)
    from .cli import run_tool

    return run_tool("videosys-train-export", lambda: export_dit(args.checkpoint, args.out, args.vae))


if __name__ == "__main__":
    sys.exit(main())
