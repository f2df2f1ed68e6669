"""Training data: video/image + caption CSVs, precomputed latents, a synthetic set, a resumable sampler."""

from .dataset import LatentDataset, VideoCaptionDataset, read_rows
from .sampler import ResumableBatchSampler, sample_seed
from .synthetic import make_shapes_dataset

__all__ = [
    "LatentDataset",
    "ResumableBatchSampler",
    "VideoCaptionDataset",
    "make_shapes_dataset",
    "read_rows",
    "sample_seed",
]
