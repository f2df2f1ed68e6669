"""Video (or image) + caption datasets read from a CSV with core's video I/O."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from videosys.core.io import load_video

__all__ = ["CLASSES_FILE", "IMAGE_SUFFIXES", "LatentDataset", "VideoCaptionDataset", "read_rows", "resize_crop"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
CLASSES_FILE = "classes.json"
"""Beside preprocessed class-labelled latents: the class names, in label order."""


def read_rows(csv_path: str | os.PathLike, required: tuple[str, ...] = ("path", "caption")) -> list[dict[str, str]]:
    """The CSV's rows, with relative paths resolved against the CSV's folder."""
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise FileNotFoundError(f"no data CSV at {csv_path}")
    with csv_path.open(newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in required if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{csv_path} lacks the column(s) {missing}; its header is {reader.fieldnames}")
        rows = list(reader)
    if not rows:
        raise ValueError(f"{csv_path} has a header but no rows")
    for row in rows:
        for key in ("path", "latent"):
            if row.get(key) and not os.path.isabs(row[key]):
                row[key] = str(csv_path.parent / row[key])
    return rows


def resize_crop(frames: torch.Tensor, size: int) -> torch.Tensor:
    """``(T, C, H, W)`` frames resized so the shorter side is ``size``, then centre-cropped to ``size x size``."""
    h, w = frames.shape[-2:]
    scale = size / min(h, w)
    if (h, w) != (size, size):
        new = (max(size, round(h * scale)), max(size, round(w * scale)))
        frames = F.interpolate(frames, size=new, mode="bilinear", antialias=True, align_corners=False)
    h, w = frames.shape[-2:]
    top, left = (h - size) // 2, (w - size) // 2
    return frames[..., top : top + size, left : left + size]


class VideoCaptionDataset(Dataset):
    """Clips of ``num_frames`` frames, every ``frame_interval``-th, resized and cropped to ``size``.

    Items are indexed by ``(index, seed)`` pairs (see :class:`ResumableBatchSampler`): the seed picks
    the clip's start frame, so a resumed run reads the same clips. Images count as 1-frame videos.
    Returns ``{"video": (3, T, size, size) in [-1, 1], "caption": str, "seed": int}``.
    """

    def __init__(self, csv_path: str | os.PathLike, num_frames: int, frame_interval: int = 1, size: int = 256) -> None:
        if num_frames < 1 or frame_interval < 1:
            raise ValueError(f"num_frames ({num_frames}) and frame_interval ({frame_interval}) must be >= 1")
        self.rows = read_rows(csv_path)
        self.num_frames = num_frames
        self.frame_interval = frame_interval
        self.size = size

    def __len__(self) -> int:
        return len(self.rows)

    def _read(self, path: Path, seed: int) -> np.ndarray:
        if path.suffix.lower() in IMAGE_SUFFIXES:
            if self.num_frames != 1:
                raise ValueError(f"{path} is an image, but the dataset samples {self.num_frames} frames per clip")
            import imageio.v3 as iio

            return np.asarray(iio.imread(path))[None, ..., :3]
        frames = load_video(path)
        span = (self.num_frames - 1) * self.frame_interval + 1
        if len(frames) < span:
            raise ValueError(
                f"{path} has {len(frames)} frames; {self.num_frames} frames every {self.frame_interval} need {span}"
            )
        start = int(torch.randint(len(frames) - span + 1, (), generator=torch.Generator().manual_seed(seed)))
        return frames[start : start + span : self.frame_interval]

    def __getitem__(self, item: tuple[int, int]) -> dict[str, Any]:
        index, seed = item
        row = self.rows[index]
        frames = torch.from_numpy(self._read(Path(row["path"]), seed)).permute(0, 3, 1, 2).float()
        frames = resize_crop(frames, self.size) / 127.5 - 1.0
        return {"video": frames.permute(1, 0, 2, 3).contiguous(), "caption": row["caption"], "seed": seed}


class LatentDataset(Dataset):
    """Precomputed latents with caption embeddings or class labels (written by ``videosys-train-preprocess``).

    Each CSV row's ``latent`` file holds ``{"latents": (C, T, H, W), "text": (L, D), "text_mask": (L,)}`` or
    ``{"latents": ..., "label": ()}``; ``classes.json`` beside a labelled CSV lists the class names.
    """

    def __init__(self, csv_path: str | os.PathLike) -> None:
        self.rows = read_rows(csv_path, required=("latent", "caption"))
        names = Path(csv_path).with_name(CLASSES_FILE)
        self.classes: list[str] | None = json.loads(names.read_text()) if names.is_file() else None

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, item: tuple[int, int]) -> dict[str, Any]:
        index, seed = item
        row = self.rows[index]
        stored = torch.load(row["latent"], map_location="cpu", weights_only=True)
        return {**stored, "caption": row["caption"], "seed": seed}
