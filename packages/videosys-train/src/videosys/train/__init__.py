"""VideoSys train: ColossalAI training with DSP sequence parallelism.

``Trainer(load_config("my.yaml")).fit()`` or the ``videosys-train`` command. ColossalAI is imported
only when a trainer starts (see the package README for how to install it next to a current torch).
"""

from .checkpoint import latest_checkpoint, list_checkpoints, write_atomically
from .config import ConfigError, TrainConfig, load_config, validate
from .data import LatentDataset, ResumableBatchSampler, VideoCaptionDataset, make_shapes_dataset
from .ema import EMA
from .mesh import ParallelMesh
from .objectives import DDPMObjective, GaussianDiffusion, RectifiedFlowObjective
from .plugins import PLUGINS, PluginSpec
from .text import HashTextEncoder, T5TextEncoder
from .tiny import TinyLatte, TinyLatteConfig
from .trainer import Trainer, TrainResult

__version__ = "0.1.0"

__all__ = [
    "EMA",
    "PLUGINS",
    "ConfigError",
    "DDPMObjective",
    "GaussianDiffusion",
    "HashTextEncoder",
    "LatentDataset",
    "ParallelMesh",
    "PluginSpec",
    "RectifiedFlowObjective",
    "ResumableBatchSampler",
    "T5TextEncoder",
    "TinyLatte",
    "TinyLatteConfig",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "VideoCaptionDataset",
    "latest_checkpoint",
    "list_checkpoints",
    "load_config",
    "make_shapes_dataset",
    "validate",
    "write_atomically",
]
