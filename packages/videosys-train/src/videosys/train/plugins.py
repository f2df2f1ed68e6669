"""ColossalAI Booster plugins by name: which run where, how to build them, the lazy import of ColossalAI."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from .config import ConfigError

__all__ = [
    "INSTALL_HINT",
    "COLOSSALAI_NOISE",
    "PLUGINS",
    "PluginSpec",
    "check_plugin",
    "import_colossalai",
    "make_plugin",
]

INSTALL_HINT = (
    "pip install --no-deps colossalai==0.5.0, then from a VideoSys checkout "
    "pip install './packages/videosys-train[colossalai]' (ColossalAI declares torch<=2.5.1; installing it "
    "without --no-deps replaces your torch; see the videosys-train README)"
)


COLOSSALAI_NOISE = (r"Please install (apex|the latest tensornvme)", r"`broadcast_buffers` is deprecated")
"""Warnings ColossalAI raises that a user cannot act on: its notes on optional CUDA kernels (apex, TensorNVMe)
it does without, and torch's deprecation of a DDP argument ColossalAI passes."""


@contextlib.contextmanager
def quiet_colossalai() -> Iterator[None]:
    """Silence :data:`COLOSSALAI_NOISE` (and only it) inside the block."""
    with warnings.catch_warnings():
        for message in COLOSSALAI_NOISE:
            warnings.filterwarnings("ignore", message=message)
        yield


def import_colossalai() -> Any:
    """Import ColossalAI on first use, with an error that says how to install it, without its kernel notes."""
    try:
        with quiet_colossalai():
            import colossalai
            from colossalai.booster import Booster  # noqa: F401
    except ImportError as err:
        raise ImportError(f"videosys-train needs ColossalAI for its Booster: {INSTALL_HINT}. ({err})") from err
    return colossalai


@dataclass(frozen=True)
class PluginSpec:
    """A Booster plugin: its class, where it runs, and what it takes over from the training loop."""

    class_name: str
    cpu: bool
    """Runs on CPU (gloo); the others need CUDA."""
    sharded_checkpoint: bool
    """Model and optimizer are saved as folders of shards (else single files)."""
    owns_precision: bool
    """Takes ``precision`` and ``max_norm`` itself (else the trainer autocasts and clips)."""
    zero: bool
    """Shards optimizer states; uses ColossalAI's HybridAdam."""
    note: str


PLUGINS: dict[str, PluginSpec] = {
    "torch_ddp": PluginSpec("TorchDDPPlugin", True, False, False, False, "PyTorch DDP; fp32 or autocast bf16 on CPU"),
    "hybrid": PluginSpec("HybridParallelPlugin", True, True, True, False, "tp_size=1, pp_size=1, zero_stage=0"),
    "low_level_zero": PluginSpec("LowLevelZeroPlugin", False, True, True, True, "ZeRO-2 (stage=2); needs CUDA"),
    "gemini": PluginSpec("GeminiPlugin", False, True, True, True, "ZeRO-3 with offload; needs CUDA (its Adam kernel)"),
    "torch_fsdp": PluginSpec("TorchFSDPPlugin", False, False, False, False, "PyTorch FSDP; needs CUDA"),
}


def check_plugin(name: str, device: str) -> PluginSpec:
    """The plugin's spec, or a :class:`ConfigError` naming the plugins that exist and those that run on CPU."""
    cpu_ones = [n for n, spec in PLUGINS.items() if spec.cpu]
    if name not in PLUGINS:
        raise ConfigError(
            f"unknown plugin {name!r} (parallel.plugin); available: {sorted(PLUGINS)}; on CPU: {cpu_ones}"
        )
    spec = PLUGINS[name]
    if device == "cpu" and not spec.cpu:
        raise ConfigError(f"plugin {name!r} ({spec.note}) does not run on CPU; on CPU use one of {cpu_ones}")
    return spec


def _no_shard_policy() -> Any:
    """A shardformer policy that leaves the model whole: HybridParallelPlugin with tp=pp=1 on any nn.Module."""
    from colossalai.shardformer.policies.base_policy import Policy

    class NoShardPolicy(Policy):
        def config_sanity_check(self) -> None:
            pass

        def preprocess(self) -> Any:
            return self.model

        def module_policy(self) -> dict:
            return {}

        def postprocess(self) -> Any:
            return self.model

    return NoShardPolicy()


def make_plugin(name: str, precision: str, device: str, max_norm: float | None, **kwargs: Any) -> Any:
    """Build the named plugin. ``precision`` goes to plugins that own it (GPU); on CPU they all run fp32."""
    spec = check_plugin(name, device)
    import_colossalai()
    from colossalai.booster import plugin as plugins

    cls = getattr(plugins, spec.class_name)
    amp = precision if device != "cpu" else "fp32"
    clip = {"max_norm": max_norm} if max_norm else {}
    if name == "torch_ddp" or name == "torch_fsdp":
        return cls(**kwargs)
    if name == "hybrid":
        defaults = {"tp_size": 1, "pp_size": 1, "zero_stage": 0, "precision": amp, "custom_policy": _no_shard_policy()}
        return cls(**{**defaults, **clip, **kwargs})
    if name == "low_level_zero":
        return cls(**{"stage": 2, "precision": amp, "initial_scale": 2**16, **clip, **kwargs})
    return cls(**{"precision": amp, **clip, **kwargs})  # gemini
