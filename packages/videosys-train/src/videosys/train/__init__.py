"""VideoSys train: ColossalAI training of videosys.models' backbones (Latte, DiT) with DSP sequence parallelism.

``Trainer(load_config("my.yaml")).fit()`` or the ``videosys-train`` command. ColossalAI is imported
only when a trainer starts (see the package README for how to install it next to a current torch).
"""

from .checkpoint import latest_checkpoint, list_checkpoints, write_atomically
from .config import ConfigError, TrainConfig, config_from_dict, load_config, validate
from .data import ImageFolderDataset, LatentDataset, ResumableBatchSampler, VideoCaptionDataset, make_shapes_dataset
from .ema import EMA
from .export import export_dit
from .mesh import ParallelMesh
from .models import FAMILIES, DataShape, Family, build_model
from .objectives import DDPMObjective, GaussianDiffusion, RectifiedFlowObjective
from .plugins import PLUGINS, PluginSpec
from .text import HashTextEncoder, T5TextEncoder
from .trainer import Trainer, TrainResult

__version__ = "0.1.0"

__all__ = [
    "EMA",
    "FAMILIES",
    "PLUGINS",
    "ConfigError",
    "DDPMObjective",
    "DataShape",
    "Family",
    "GaussianDiffusion",
    "HashTextEncoder",
    "ImageFolderDataset",
    "LatentDataset",
    "ParallelMesh",
    "PluginSpec",
    "RectifiedFlowObjective",
    "ResumableBatchSampler",
    "T5TextEncoder",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "VideoCaptionDataset",
    "build_model",
    "config_from_dict",
    "export_dit",
    "latest_checkpoint",
    "list_checkpoints",
    "load_config",
    "make_shapes_dataset",
    "validate",
    "write_atomically",
]
