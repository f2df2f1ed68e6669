"""Training data: caption CSVs, class-labelled image folders, precomputed latents, synthetic clips, a sampler."""

from .dataset import CLASSES_FILE, LatentDataset, VideoCaptionDataset, read_rows
from .images import ImageFolderDataset, find_classes
from .sampler import ResumableBatchSampler, sample_seed, stream_seed
from .synthetic import make_shapes_dataset

__all__ = [
    "CLASSES_FILE",
    "ImageFolderDataset",
    "LatentDataset",
    "ResumableBatchSampler",
    "VideoCaptionDataset",
    "find_classes",
    "make_shapes_dataset",
    "read_rows",
    "sample_seed",
    "stream_seed",
]
