"""``videosys-train-preprocess CONFIG.yaml --out DIR``: encode a data set once, train on the latents.

Runs the config's VAE and caption encoder over every CSV row (the clip each row yields in epoch 0), or
the VAE over every image of ``data.image_folder``, and writes ``DIR/latents/NNNNNN.pt`` plus ``DIR/data.csv``
(``latent,caption``; for images the caption is the class name and ``DIR/classes.json`` lists the classes).
Train on it with ``--override data.csv=DIR/data.csv data.precomputed=true data.image_folder=null``: the frozen
encoders then cost nothing per step, at the price of one fixed clip per video (and no random flip).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import torch

from .config import ConfigError, load_config
from .data import CLASSES_FILE, ImageFolderDataset, VideoCaptionDataset, make_shapes_dataset, sample_seed
from .encoders import build_text_encoder, build_vae

__all__ = ["main", "preprocess"]


def preprocess(config_path: str, out: Path, overrides: list[str] = ()) -> Path:
    """Encode the config's data set into ``out``; return the new CSV's path.

    A caption CSV gives ``{"latents", "text", "text_mask"}`` per clip; an image folder gives
    ``{"latents", "label"}`` per image (unflipped) and ``classes.json``, the class names in label order.
    """
    config = load_config(config_path, overrides)
    data = config.data
    if (data.csv is None) == (data.image_folder is None):
        raise ConfigError("set exactly one of data.csv (a path,caption CSV) and data.image_folder (root/<class>/*.png)")
    if data.image_folder is not None:
        dataset = ImageFolderDataset(data.image_folder, data.size, flip=False)
        out.mkdir(parents=True, exist_ok=True)
        (out / CLASSES_FILE).write_text(json.dumps(dataset.classes))
    else:
        if not Path(data.csv).is_file() and data.synthetic is not None:
            s = data.synthetic
            make_shapes_dataset(Path(data.csv).parent, s.num_videos, s.frames, s.size, seed=config.seed)
        dataset = VideoCaptionDataset(data.csv, data.num_frames, data.frame_interval, data.size)
    vae, text_encoder = build_vae(config.vae), build_text_encoder(config.text_encoder)
    (out / "latents").mkdir(parents=True, exist_ok=True)
    from tqdm.auto import tqdm

    rows = []
    for index in tqdm(range(len(dataset)), desc="preprocess", unit="sample"):
        item = dataset[(index, sample_seed(config.seed, 0, index))]
        stored = {"latents": vae.encode(item["video"][None])[0].contiguous()}
        if "label" in item:
            stored["label"] = item["label"]
            caption = dataset.classes[int(item["label"])]
        else:
            text, mask = text_encoder.encode([item["caption"]])
            stored.update(text=text[0], text_mask=mask[0])
            caption = item["caption"]
        name = f"latents/{index:06d}.pt"
        torch.save(stored, out / name)
        rows.append({"latent": name, "caption": caption})
    csv_path = out / "data.csv"
    with csv_path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["latent", "caption"])
        writer.writeheader()
        writer.writerows(rows)
    return csv_path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="videosys-train-preprocess", description=__doc__)
    parser.add_argument("config")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--override", "-o", nargs="+", action="extend", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    from .cli import run_tool

    return run_tool("videosys-train-preprocess", lambda: preprocess(args.config, args.out, args.override))


if __name__ == "__main__":
    sys.exit(main())
