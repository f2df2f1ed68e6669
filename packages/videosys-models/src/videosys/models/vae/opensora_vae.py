"""Open-Sora 1.2's video VAE: the SDXL 2-D AutoencoderKL per frame, then the temporal VAE over micro-clips.

A video ``(B, 3, T, H, W)`` in [-1, 1] becomes latents ``(B, 4, T', H/8, W/8)``: every frame through the
2-D VAE (times 0.18215, the constant the published weights were trained with), then each micro-clip of 17
frames through the temporal VAE (17 -> 5 latent frames), then ``(z - shift) / scale``. Micro-clips are
encoded and decoded independently, exactly as the original does, which is also what bounds memory on long
videos; the 2-D VAE runs ``micro_batch_size`` frames at a time for the same reason.

The weights load unchanged from ``hpcai-tech/OpenSora-VAE-v1.2`` (``config.json`` + ``model.safetensors``,
keys ``spatial_vae.module.*`` and ``temporal_vae.*``): see :meth:`OpenSoraVAE.from_pretrained`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..loading import CheckpointError, check_keys, read_config
from .common import DiagonalGaussian, per_frame
from .temporal_vae import TemporalVAE, TemporalVAEConfig

__all__ = [
    "ARCHITECTURE_FILE",
    "SDXL_VAE_CONFIG",
    "OpenSoraVAE",
    "OpenSoraVAEConfig",
    "SpatialVAE",
    "read_architecture",
]

SDXL_VAE_CONFIG: dict[str, Any] = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
    "block_out_channels": [128, 256, 512, 512],
    "layers_per_block": 2,
    "act_fn": "silu",
    "latent_channels": 4,
    "norm_num_groups": 32,
    "sample_size": 512,
    "scaling_factor": 0.13025,
}
"""diffusers ``AutoencoderKL`` config of the SDXL VAE Open-Sora 1.2 builds on (``pixart_sigma_sdxlvae_T5_diffusers``).

The published ``config.json`` names that VAE by hub id only, so its shape lives here."""

SPATIAL_SCALE = 0.18215
"""Factor on the 2-D latents: SD 1.5's, kept by Open-Sora 1.2 for the SDXL VAE (their issue #493); not SDXL's."""

CONFIG_TYPE = "VideoAutoencoderPipeline"

ARCHITECTURE_FILE = "architecture.json"
"""Optional file beside ``config.json`` giving the shapes of a VAE that is not the published one (tiny or
retrained): ``{"vae_2d": <diffusers AutoencoderKL config>, "temporal": <VAE_Temporal_SD keyword arguments>}``."""

_TEMPORAL_NAMES = {
    "in_out_channels": "channels",
    "embed_dim": "latent_channels",
    "filters": "filters",
    "num_res_blocks": "num_res_blocks",
    "channel_multipliers": "channel_multipliers",
    "temporal_downsample": "temporal_downsample",
    "num_groups": "num_groups",
}
"""The original ``VAE_Temporal`` keyword names to :class:`TemporalVAEConfig` fields."""


def read_architecture(folder: str | os.PathLike) -> tuple[dict[str, Any] | None, TemporalVAEConfig | None]:
    """``(vae_2d, temporal)`` from the folder's :data:`ARCHITECTURE_FILE`, or ``(None, None)`` without one."""
    path = Path(folder) / ARCHITECTURE_FILE
    if not path.is_file():
        return None, None
    arch = json.loads(path.read_text())
    temporal = arch.get("temporal")
    if temporal is None:
        return arch.get("vae_2d"), None
    if temporal.get("latent_embed_dim", temporal.get("embed_dim")) != temporal.get("embed_dim"):
        raise CheckpointError(f"{path}: latent_embed_dim must equal embed_dim (the published VAE's layout)")
    unknown = sorted(set(temporal) - set(_TEMPORAL_NAMES) - {"latent_embed_dim"})
    if unknown:
        raise CheckpointError(f"{path}: unknown temporal VAE keys {unknown}; expected {sorted(_TEMPORAL_NAMES)}")
    fields = {
        _TEMPORAL_NAMES[k]: tuple(v) if isinstance(v, list) else v for k, v in temporal.items() if k in _TEMPORAL_NAMES
    }
    return arch.get("vae_2d"), TemporalVAEConfig(**fields)


@dataclass(frozen=True)
class OpenSoraVAEConfig:
    """Shape and normalisation of the Open-Sora 1.2 VAE; the defaults are the published model's."""

    vae_2d: dict[str, Any] = field(default_factory=lambda: dict(SDXL_VAE_CONFIG))
    """diffusers ``AutoencoderKL`` config of the per-frame VAE."""
    temporal: TemporalVAEConfig = field(default_factory=TemporalVAEConfig)
    """The temporal VAE's shape."""
    micro_frame_size: int | None = 17
    """Frames per independently encoded micro-clip (17 frames -> 5 latent frames); ``None``: the whole video."""
    micro_batch_size: int | None = 4
    """Frames the 2-D VAE processes at once (``None``: all); results do not depend on it."""
    shift: tuple[float, ...] = (-0.10, 0.34, 0.27, 0.98)
    """Per-channel latent mean removed after encoding."""
    scale: tuple[float, ...] = (3.85, 2.32, 2.33, 3.06)
    """Per-channel latent std divided out after encoding."""

    def __post_init__(self) -> None:
        channels = self.temporal.latent_channels
        if len(self.shift) != channels or len(self.scale) != channels:
            raise ValueError(
                f"shift and scale need one value per latent channel ({channels}), got {self.shift} and {self.scale}"
            )
        if self.micro_frame_size is not None and self.micro_frame_size < 1:
            raise ValueError(f"micro_frame_size must be >= 1, got {self.micro_frame_size}")
        if self.micro_batch_size is not None and self.micro_batch_size < 1:
            raise ValueError(f"micro_batch_size must be None or >= 1, got {self.micro_batch_size}")


def _in_chunks(x: torch.Tensor, size: int | None, dim: int, fn: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """``fn`` over consecutive slices of ``x`` along ``dim`` (all at once when ``size`` is None), concatenated."""
    if size is None:
        return fn(x)
    return torch.cat([fn(chunk) for chunk in x.split(size, dim=dim)], dim=dim)


class SpatialVAE(nn.Module):
    """The 2-D VAE applied frame by frame to ``(B, C, T, H, W)`` videos; the diffusers model sits at ``.module``.

    ``micro_batch_size`` frames go through at once (``None``: all); it may be changed at any time to trade
    memory for speed, results do not depend on it.
    """

    def __init__(self, config: dict[str, Any], micro_batch_size: int | None) -> None:
        super().__init__()
        from diffusers import AutoencoderKL

        self.module = AutoencoderKL(**config)
        self.micro_batch_size = micro_batch_size

    @property
    def downsample(self) -> int:
        return 2 ** (len(self.module.config.block_out_channels) - 1)

    def _per_frame(self, x: torch.Tensor, fn: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        return per_frame(lambda frames: _in_chunks(frames, self.micro_batch_size, 0, fn), x)

    def encode(self, x: torch.Tensor, generator: torch.Generator | None, sample: bool) -> torch.Tensor:
        def encode_frames(frames: torch.Tensor) -> torch.Tensor:
            posterior = DiagonalGaussian(self.module.encode(frames).latent_dist.parameters)
            return (posterior.sample(generator) if sample else posterior.mean) * SPATIAL_SCALE

        return self._per_frame(x, encode_frames)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self._per_frame(z, lambda frames: self.module.decode(frames / SPATIAL_SCALE).sample)


class OpenSoraVAE(nn.Module):
    """Open-Sora 1.2's VAE: videos ``(B, 3, T, H, W)`` <-> normalised latents ``(B, 4, T', H/8, W/8)``."""

    def __init__(self, config: OpenSoraVAEConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or OpenSoraVAEConfig()
        self.spatial_vae = SpatialVAE(config.vae_2d, config.micro_batch_size)
        self.temporal_vae = TemporalVAE(config.temporal)
        channels = (1, -1, 1, 1, 1)
        # From the config (the source of truth), not the state dict: see from_pretrained.
        self.register_buffer("shift", torch.tensor(config.shift).reshape(channels), persistent=False)
        self.register_buffer("scale", torch.tensor(config.scale).reshape(channels), persistent=False)

    @property
    def out_channels(self) -> int:
        return self.config.temporal.latent_channels

    def _clip_frames(self, num_frames: int) -> list[int]:
        """Frames of each micro-clip of a ``num_frames`` video (the last one may be shorter)."""
        micro = self.config.micro_frame_size or num_frames
        return [min(micro, num_frames - start) for start in range(0, num_frames, micro)]

    def latent_frames(self, num_frames: int) -> int:
        """Latent frames of a ``num_frames`` video: each micro-clip compressed on its own (51 -> 3 x 5 = 15)."""
        return sum(self.temporal_vae.latent_frames(frames) for frames in self._clip_frames(num_frames))

    def latent_shape(self, num_frames: int, height: int, width: int) -> tuple[int, int, int, int]:
        """``(C, T', h, w)`` of the latents of a ``num_frames x height x width`` video."""
        factor = self.spatial_vae.downsample
        return (self.out_channels, self.latent_frames(num_frames), height // factor, width // factor)

    def encode(
        self, video: torch.Tensor, *, generator: torch.Generator | None = None, sample: bool = True
    ) -> torch.Tensor:
        """Normalised latents of ``video`` in [-1, 1].

        ``sample=True`` draws from both posteriors as the original does (noise drawn on the generator's
        device, CPU by default: the original run after ``torch.manual_seed(s)`` equals ours with a CPU
        generator seeded ``s``); ``sample=False`` takes their means.
        """
        if video.ndim != 5:
            raise ValueError(f"video must be (B, C, T, H, W), got shape {tuple(video.shape)}")
        x = self.spatial_vae.encode(video, generator, sample)

        def encode_clip(clip: torch.Tensor) -> torch.Tensor:
            posterior = self.temporal_vae.encode(clip)
            return posterior.sample(generator) if sample else posterior.mean

        z = _in_chunks(x, self.config.micro_frame_size, 2, encode_clip)
        return (z - self.shift.to(z.dtype)) / self.scale.to(z.dtype)

    def decode(self, z: torch.Tensor, num_frames: int) -> torch.Tensor:
        """Videos of exactly ``num_frames`` frames from normalised latents, one micro-clip at a time."""
        if z.ndim != 5:
            raise ValueError(f"latents must be (B, C, T', h, w), got shape {tuple(z.shape)}")
        if self.latent_frames(num_frames) != z.shape[2]:
            raise ValueError(
                f"num_frames={num_frames} encodes to {self.latent_frames(num_frames)} latent frames, "
                f"but the latents have {z.shape[2]}"
            )
        z = z * self.scale.to(z.dtype) + self.shift.to(z.dtype)
        clips, start = [], 0
        for frames in self._clip_frames(num_frames):
            length = self.temporal_vae.latent_frames(frames)
            clips.append(self.temporal_vae.decode(z[:, :, start : start + length], frames))
            start += length
        return self.spatial_vae.decode(torch.cat(clips, dim=2))

    @classmethod
    def from_pretrained(
        cls,
        folder: str | os.PathLike,
        *,
        vae_2d: dict[str, Any] | None = None,
        temporal: TemporalVAEConfig | None = None,
        micro_batch_size: int | None = 4,
        dtype: torch.dtype = torch.float32,
        device: str | torch.device = "cpu",
    ) -> OpenSoraVAE:
        """Load an ``hpcai-tech/OpenSora-VAE-v1.2`` folder (``config.json`` + ``model.safetensors``).

        Its ``config.json`` gives ``micro_frame_size`` (null: whole videos), ``shift`` and ``scale``; it
        names the 2-D VAE only by hub id and the temporal VAE by type, so their shapes are the published
        ones unless ``vae_2d`` / ``temporal`` or the folder's :data:`ARCHITECTURE_FILE` say otherwise (tiny
        test models; the arguments win over the file). Missing, unexpected or
        wrongly shaped weights raise :class:`~videosys.models.loading.CheckpointError` naming them.
        ``shift``/``scale`` copies in the weights file, if any, must agree with the config.
        """
        from safetensors.torch import load_file

        meta = read_config(folder)
        if meta.get("model_type") != CONFIG_TYPE:
            raise CheckpointError(
                f"{folder}/config.json has model_type {meta.get('model_type')!r}, expected {CONFIG_TYPE!r} "
                "(an hpcai-tech/OpenSora-VAE-v1.2 folder)"
            )
        absent = [key for key in ("micro_frame_size", "shift", "scale") if key not in meta]
        if absent:
            raise CheckpointError(
                f"{folder}/config.json lacks {', '.join(absent)} (an OpenSora-VAE-v1.2 config.json has them)"
            )
        stored_2d, stored_temporal = read_architecture(folder)
        config = OpenSoraVAEConfig(
            vae_2d=dict(vae_2d or stored_2d or SDXL_VAE_CONFIG),
            temporal=temporal or stored_temporal or TemporalVAEConfig(),
            micro_frame_size=meta["micro_frame_size"],
            micro_batch_size=micro_batch_size,
            shift=tuple(float(v) for v in meta["shift"]),
            scale=tuple(float(v) for v in meta["scale"]),
        )
        weights = Path(folder) / "model.safetensors"
        if not weights.is_file():
            raise CheckpointError(f"no model.safetensors in {folder}")
        state_dict = load_file(weights)
        model = cls(config)
        for name in ("shift", "scale"):
            stored = state_dict.pop(name, None)
            expected = getattr(model, name).reshape(-1)
            if stored is not None and not torch.allclose(stored.reshape(-1).float(), expected):
                raise CheckpointError(
                    f"{weights} stores {name}={stored.reshape(-1).tolist()} but config.json says {expected.tolist()}"
                )
        check_keys(model, state_dict, f"checkpoint {weights}")
        model.load_state_dict(state_dict)
        return model.to(device=device, dtype=dtype).eval()
