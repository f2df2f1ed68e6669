"""Turn a videosys-train run of ``train.yaml`` into the weights file videosys-models ships.

    python examples/embedded_model/export.py outputs/embedded \\
        --out packages/videosys-models/src/videosys/models/embedded/videosys-tiny.safetensors

Takes the EMA (or, with ``--weights model``, the raw) weights of the run's latest checkpoint (or of
``--checkpoint``), the frozen word vectors of its ``hash`` text encoder for every word of the shapes
grammar (and, for a run with caption dropout, the empty caption's vector and ``--cfg``, the default
guidance scale), and the noise schedule of its DDPM objective (as the arguments of a diffusers
``DDIMScheduler``). Needs videosys-train and videosys-models.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from videosys.models.embedded import EMBEDDED_SIZES, build_backbone, write_weights
from videosys.train.checkpoint import RUNNING_STATES, latest_checkpoint
from videosys.train.data.synthetic import VOCABULARY
from videosys.train.text import HashTextEncoder

PREDICTION_TYPES = {"epsilon": "epsilon", "v": "v_prediction"}


def scheduler_config(objective: dict) -> dict:
    """DDIMScheduler arguments for the linear-beta DDPM objective the run trained with."""
    if objective["kind"] != "ddpm" or objective["learn_sigma"]:
        raise SystemExit(f"the embedded pipeline samples DDPM without learned sigma; this run used {objective}")
    return {
        "num_train_timesteps": objective["num_timesteps"],
        "beta_start": 1e-4 * 1000 / objective["num_timesteps"],  # GaussianDiffusion.linear's scaling
        "beta_end": 0.02 * 1000 / objective["num_timesteps"],
        "beta_schedule": "linear",
        "prediction_type": PREDICTION_TYPES[objective["prediction"]],
        "clip_sample": True,  # pixel space: the clean clip lies in [-1, 1]
        "set_alpha_to_one": True,
        "timestep_spacing": "trailing",  # the first step starts from pure noise (t = 999)
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, help="the run's output_dir (holding checkpoints/)")
    parser.add_argument("--out", type=Path, required=True, help="the .safetensors file to write")
    parser.add_argument("--weights", choices=("ema", "model"), default="ema", help="the EMA or the raw weights")
    parser.add_argument("--checkpoint", type=Path, help="a checkpoint folder of the run (default: the latest)")
    parser.add_argument("--cfg", type=float, default=1.0, help="the default guidance scale (needs caption dropout)")
    args = parser.parse_args()
    checkpoint = args.checkpoint or latest_checkpoint(args.run / "checkpoints")
    if checkpoint is None:
        raise SystemExit(f"no complete checkpoint under {args.run / 'checkpoints'}")
    states = json.loads((checkpoint / RUNNING_STATES).read_text())
    config = states["config"]
    sizes = {**EMBEDDED_SIZES, **config["model"]["kwargs"]}
    model = build_backbone(**config["model"]["kwargs"])
    if args.weights == "ema":
        weights = torch.load(checkpoint / "ema.pt", map_location="cpu", weights_only=True)
    else:  # the Booster saved the DDP-wrapped model's state dict
        saved = torch.load(checkpoint / "model", map_location="cpu", weights_only=True)
        weights = {k.removeprefix("module."): v for k, v in saved.items()}
    params = dict(model.named_parameters())
    if weights.keys() != params.keys():
        differ = sorted(set(weights) ^ set(params))[:5]
        raise SystemExit(f"the {args.weights} weights do not match the parameters: {differ}")
    with torch.no_grad():
        for name, value in weights.items():
            params[name].copy_(value)
    text = config["text_encoder"]
    if text["kind"] != "hash":
        raise SystemExit(f"the embedded pipeline stores hash word vectors; this run used {text['kind']!r}")
    encoder = HashTextEncoder(**text["kwargs"])
    table = encoder.encode(list(VOCABULARY))[0][:, 0]  # each word alone: its vector is the first token's
    dropout = config["model"].get("caption_dropout", 0.0)
    if args.cfg != 1.0 and not dropout:
        raise SystemExit(f"--cfg {args.cfg} needs a run trained with model.caption_dropout > 0; this one had none")
    empty = encoder.encode([""])[0][0, 0] if dropout else None  # what replaced the dropped captions
    metadata = {
        "transformer": sizes,
        "vocabulary": list(VOCABULARY),
        "max_words": encoder.max_length,
        "scheduler": scheduler_config(config["objective"]),
        "held_out": config["data"]["synthetic"]["held_out"],
        "trained_steps": states["global_step"],
        "weights": args.weights,
        "guidance_scale": args.cfg,
    }
    path = write_weights(args.out, model, table, metadata, empty)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB) from {checkpoint}")


if __name__ == "__main__":
    main()
