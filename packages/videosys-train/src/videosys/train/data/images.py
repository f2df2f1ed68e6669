"""Class-labelled images in the ImageFolder layout (``root/<class>/*.png``), as ImageNet is laid out."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from .dataset import IMAGE_SUFFIXES, resize_crop
from .sampler import stream_seed

__all__ = ["ImageFolderDataset", "find_classes"]


def find_classes(root: str | os.PathLike) -> list[str]:
    """The class names: ``root``'s sub-folders, sorted (so class ``i`` is the ``i``-th name, as torchvision does)."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder {root} does not exist; expected root/<class>/*.png|jpg")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise ValueError(f"image folder {root} has no class sub-folders; expected root/<class>/*.png|jpg")
    return classes


class ImageFolderDataset(Dataset):
    """Images resized (shorter side) and centre-cropped to ``size``, labelled by their folder.

    Indexed by ``(index, seed)`` like the video datasets; DiT's horizontal flip is drawn from the
    sample's seed, so resumed runs see the same images. Returns ``{"video": (3, 1, size, size) in [-1, 1],
    "label": int64 tensor, "seed": int}``.
    """

    def __init__(self, root: str | os.PathLike, size: int = 256, flip: bool = True) -> None:
        self.classes = find_classes(root)
        self.items = [
            (path, label)
            for label, name in enumerate(self.classes)
            for path in sorted((Path(root) / name).iterdir())
            if path.suffix.lower() in IMAGE_SUFFIXES
        ]
        if not self.items:
            raise ValueError(f"image folder {root} holds no images ({', '.join(IMAGE_SUFFIXES)}) in its class folders")
        self.size = size
        self.flip = flip

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, item: tuple[int, int]) -> dict[str, Any]:
        import imageio.v3 as iio

        index, seed = item
        path, label = self.items[index]
        image = np.asarray(iio.imread(path))
        if image.ndim == 2:
            image = np.repeat(image[..., None], 3, axis=-1)
        frames = torch.from_numpy(np.ascontiguousarray(image[..., :3])).permute(2, 0, 1)[None].float()
        frames = resize_crop(frames, self.size) / 127.5 - 1.0
        if self.flip and torch.rand((), generator=torch.Generator().manual_seed(stream_seed(seed, 0))) < 0.5:
            frames = frames.flip(-1)
        return {"video": frames.permute(1, 0, 2, 3).contiguous(), "label": torch.tensor(label), "seed": seed}
