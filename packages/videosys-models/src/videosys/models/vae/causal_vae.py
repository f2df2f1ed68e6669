"""Open-Sora-Plan's CausalVAE (releases v1.1.0 and v1.2.0): videos <-> latents, 4x in time, 8x8 in space.

A video ``(B, 3, 1 + 4k, H, W)`` in [-1, 1] becomes latents ``(B, 4, 1 + k, H/8, W/8)``. Every convolution
is causal in time and the first frame is kept apart when time is resampled, so no layer looks ahead: an
image is a 1-frame video. Only the GroupNorms of the 3-D blocks pool their statistics over the whole clip
(as the original's do), which is how later frames reach the first latent frame at all.

The release's ``vae/config.json`` decides the architecture: it names the block of each level
(``encoder_resnet_blocks``, ``encoder_spatial_downsample`` ...); v1.1.0 halves time with
``TimeDownsampleRes2x`` and v1.2.0 with ``Spatial2xTime2x3DDownsample``, both read by this one class.
Module and parameter names are the original's (``encoder.down.1.time_downsample.mix_factor`` ...), so the
official weights load unchanged: :meth:`CausalVAE.from_pretrained`.

Latents are the posterior's, unscaled: the release pipelines multiply them by :data:`LATENT_SCALE` for the
transformer (and divide before decoding); that is the caller's job here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..loading import CheckpointError, check_keys, load_state_dict, read_config
from .causal_vae_blocks import BLOCKS, TIME_STRIDED, build_block, normalize
from .common import DiagonalGaussian
from .tiling import tiled_2d, time_chunks

__all__ = [
    "LATENT_SCALE",
    "TILING_V1_1",
    "TILING_V1_2",
    "CausalVAE",
    "CausalVAEConfig",
    "CausalVAETiling",
]

LATENT_SCALE = 0.18215
"""Factor the release pipelines (``CausalVAEModelWrapper``) put on the latents the transformer sees."""

_IGNORED_KEYS = {"lr", "loss_type", "loss_params", "dropout", "in_channels", "out_channels"}
"""config.json keys that do not shape the inference model: training settings; dropout (off at inference);
in/out channels, which the original fixes at 3 whatever they say."""

_ROLES = {
    "q_conv": "quant",
    "encoder_conv_in": "conv",
    "encoder_conv_out": "conv",
    "decoder_conv_in": "conv",
    "decoder_conv_out": "conv",
    "encoder_attention": "attention",
    "decoder_attention": "attention",
    "encoder_mid_resnet": "resnet",
    "decoder_mid_resnet": "resnet",
    "encoder_resnet_blocks": "resnet",
    "decoder_resnet_blocks": "resnet",
    "encoder_spatial_downsample": "spatial_downsample",
    "encoder_temporal_downsample": "temporal_downsample",
    "decoder_spatial_upsample": "spatial_upsample",
    "decoder_temporal_upsample": "temporal_upsample",
}
"""The role (a key of :data:`BLOCKS`) of each block-naming config field; tuple fields name one per level."""


def _factors(spatial: tuple[str, ...], temporal: tuple[str, ...]) -> tuple[int, int]:
    """``(space, time)`` resampling factors of one side's per-level spatial and temporal block names."""
    return 2 ** sum(bool(name) for name in spatial), 2 ** sum(name in TIME_STRIDED for name in spatial + temporal)


def _as_tuple(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


@dataclass(frozen=True)
class CausalVAEConfig:
    """The original ``CausalVAEModel``'s constructor arguments that shape it; defaults are the v1.2.0 release's."""

    hidden_size: int = 128
    """Width of the first level; level ``i`` has ``hidden_size * hidden_size_mult[i]`` channels."""
    hidden_size_mult: tuple[int, ...] = (1, 2, 4, 4)
    """Width multiplier per level."""
    z_channels: int = 4
    """Channels between the encoder/decoder and the quant convolutions."""
    embed_dim: int = 4
    """Latent channels."""
    double_z: bool = True
    """Whether the encoder predicts mean and log-variance (needed for a Gaussian posterior)."""
    num_res_blocks: int = 2
    """Residual blocks per encoder level (the decoder has one more)."""
    attn_resolutions: tuple[int, ...] = ()
    """Feature-map sizes (relative to ``resolution``) at which levels get attention blocks."""
    resolution: int = 256
    """Nominal input size, only used to place ``attn_resolutions``."""
    use_quant_layer: bool = True
    """Whether 1x1x1 ``quant_conv``/``post_quant_conv`` sit between the posterior and encoder/decoder."""
    q_conv: str = "CausalConv3d"
    """Convolution of the quant layers (the releases' only kind)."""
    encoder_conv_in: str = "Conv2d"
    """Block names per role and level, as ``config.json`` spells them (defaults: the v1.2.0 release)."""
    encoder_conv_out: str = "CausalConv3d"
    encoder_attention: str = "AttnBlock3DFix"
    encoder_resnet_blocks: tuple[str, ...] = ("ResnetBlock2D", "ResnetBlock2D", "ResnetBlock3D", "ResnetBlock3D")
    encoder_spatial_downsample: tuple[str, ...] = (
        "Downsample",
        "Spatial2xTime2x3DDownsample",
        "Spatial2xTime2x3DDownsample",
        "",
    )
    encoder_temporal_downsample: tuple[str, ...] = ("", "", "", "")
    encoder_mid_resnet: str = "ResnetBlock3D"
    decoder_conv_in: str = "CausalConv3d"
    decoder_conv_out: str = "CausalConv3d"
    decoder_attention: str = "AttnBlock3DFix"
    decoder_resnet_blocks: tuple[str, ...] = ("ResnetBlock3D",) * 4
    decoder_spatial_upsample: tuple[str, ...] = (
        "",
        "SpatialUpsample2x",
        "Spatial2xTime2x3DUpsample",
        "Spatial2xTime2x3DUpsample",
    )
    decoder_temporal_upsample: tuple[str, ...] = ("", "", "", "")
    decoder_mid_resnet: str = "ResnetBlock3D"

    def __post_init__(self) -> None:
        levels = len(self.hidden_size_mult)
        per_level = [name for name in _ROLES if isinstance(getattr(self, name), tuple)]
        wrong = {name: len(getattr(self, name)) for name in per_level if len(getattr(self, name)) != levels}
        if wrong:
            raise ValueError(f"{wrong} must each have one entry per level (len(hidden_size_mult) = {levels})")
        for name, role in _ROLES.items():
            value = getattr(self, name)
            optional = "sample" in role  # a level may skip resampling
            for block in value if isinstance(value, tuple) else (value,):
                if block not in BLOCKS[role] and not (optional and block == ""):
                    raise ValueError(f"unsupported {role} block {block!r} in {name}; supported: {sorted(BLOCKS[role])}")
        if self.encoder_spatial_downsample[-1] or self.encoder_temporal_downsample[-1]:
            raise ValueError("the last encoder level cannot downsample (the original feeds its blocks' output on)")
        encoder = _factors(self.encoder_spatial_downsample, self.encoder_temporal_downsample)
        decoder = _factors(self.decoder_spatial_upsample, self.decoder_temporal_upsample)
        if encoder != decoder:
            raise ValueError(f"encoder compresses (space, time) by {encoder} but decoder expands by {decoder}")

    @property
    def spatial_factor(self) -> int:
        """Pixels per latent along H and W."""
        return _factors(self.encoder_spatial_downsample, self.encoder_temporal_downsample)[0]

    @property
    def time_factor(self) -> int:
        """Video frames per latent frame after the first."""
        return _factors(self.encoder_spatial_downsample, self.encoder_temporal_downsample)[1]

    @classmethod
    def from_dict(cls, config: dict[str, Any]) -> CausalVAEConfig:
        """From a release's ``config.json``; bookkeeping (``_class_name`` ...) and training keys are ignored.

        Every architecture key must be present (only ``use_quant_layer``, which v1.1.0 predates, defaults to
        True as in the original), so a partial file is not silently completed with another release's layout.
        """
        names = {f.name for f in fields(cls)}
        unknown = sorted(k for k in config if k not in names and k not in _IGNORED_KEYS and not k.startswith("_"))
        if unknown:
            raise ValueError(f"unknown CausalVAE config keys {unknown}; expected some of {sorted(names)}")
        absent = sorted(names - set(config) - {"use_quant_layer"})
        if absent:
            raise ValueError(f"CausalVAE config lacks {absent}")
        return cls(**{k: _as_tuple(v) for k, v in config.items() if k in names})


@dataclass(frozen=True)
class CausalVAETiling:
    """When and how to encode/decode in tiles; the defaults are v1.2.0's ``sample_t2v.py`` settings.

    Tiling is used when a video is wider, taller or longer than one tile. Tiles are ``sample_size``
    pixels square (``sample_size / 8`` latents), overlap by ``overlap`` of their size and are cross-faded;
    time is cut into chunks of ``sample_frames`` video / ``latent_frames`` latent frames that share one frame.
    """

    sample_size: int = 512
    """Tile side in pixels (the original's ``tile_sample_min_size``)."""
    sample_frames: int = 29
    """Video frames per temporal chunk when encoding (``tile_sample_min_size_t``)."""
    latent_frames: int = 8
    """Latent frames per temporal chunk when decoding (``tile_latent_min_size_t``)."""
    overlap: float = 0.125
    """Fraction of a tile shared with its neighbour (``tile_overlap_factor``)."""
    progress: bool = True
    """Show a progress bar over the tiles (only when stderr is a terminal)."""

    def __post_init__(self) -> None:
        if not 0.0 <= self.overlap < 1.0:
            raise ValueError(f"overlap must be in [0, 1), got {self.overlap}")
        if self.sample_frames < 2 or self.latent_frames < 2:
            raise ValueError(
                f"temporal chunks need >= 2 frames, got sample_frames={self.sample_frames}, "
                f"latent_frames={self.latent_frames}"
            )


TILING_V1_1 = CausalVAETiling(sample_size=256, sample_frames=65, latent_frames=17, overlap=0.25)
"""v1.1.0's tiling: the model's defaults and ``sample_t2v.py``'s ``--tile_overlap_factor`` default."""
TILING_V1_2 = CausalVAETiling()
"""v1.2.0's tiling as ``sample_t2v.py --enable_tiling`` sets it (``--save_memory`` uses ``sample_size=256``)."""


def _level_blocks(cin: int, cout: int, name: str, count: int, attention: str | None) -> tuple[nn.ModuleList, ...]:
    blocks, attn = nn.ModuleList(), nn.ModuleList()
    for _ in range(count):
        blocks.append(build_block("resnet", name, cin, cout))
        cin = cout
        if attention is not None:
            attn.append(build_block("attention", attention, cout))
    return blocks, attn


def _resamplers(channels: int, *slots: tuple[str, str, str]) -> dict[str, nn.Module]:
    """``{attribute: block}`` for each ``(attribute, role, name)`` slot the config fills (name not empty)."""
    return {attr: build_block(role, name, channels, channels) for attr, role, name in slots if name}


class _Mid(nn.Module):
    def __init__(self, channels: int, resnet: str, attention: str) -> None:
        super().__init__()
        self.block_1 = build_block("resnet", resnet, channels, channels)
        self.attn_1 = build_block("attention", attention, channels)
        self.block_2 = build_block("resnet", resnet, channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block_2(self.attn_1(self.block_1(x)))


class _Level(nn.Module):
    """One resolution: residual blocks (each followed by attention where configured), then resampling."""

    def __init__(self, blocks: nn.ModuleList, attn: nn.ModuleList, resample: dict[str, nn.Module]) -> None:
        super().__init__()
        self.block, self.attn = blocks, attn
        for name, module in resample.items():
            self.add_module(name, module)
        self.resample = tuple(resample)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, block in enumerate(self.block):
            x = block(x)
            if len(self.attn):
                x = self.attn[i](x)
        for name in self.resample:
            x = getattr(self, name)(x)
        return x


class Encoder(nn.Module):
    def __init__(self, c: CausalVAEConfig) -> None:
        super().__init__()
        self.conv_in = build_block("conv", c.encoder_conv_in, 3, c.hidden_size)
        self.down = nn.ModuleList()
        cin, size = c.hidden_size, c.resolution
        for level, mult in enumerate(c.hidden_size_mult):
            cout = c.hidden_size * mult
            attention = c.encoder_attention if size in c.attn_resolutions else None
            blocks, attn = _level_blocks(cin, cout, c.encoder_resnet_blocks[level], c.num_res_blocks, attention)
            resample = _resamplers(
                cout,
                ("downsample", "spatial_downsample", c.encoder_spatial_downsample[level]),
                ("time_downsample", "temporal_downsample", c.encoder_temporal_downsample[level]),
            )
            size //= 2 if c.encoder_spatial_downsample[level] else 1
            self.down.append(_Level(blocks, attn, resample))
            cin = cout
        self.mid = _Mid(cin, c.encoder_mid_resnet, c.encoder_attention)
        self.norm_out = normalize(cin)
        self.conv_out = build_block("conv", c.encoder_conv_out, cin, 2 * c.z_channels if c.double_z else c.z_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv_in(x)
        for level in self.down:
            x = level(x)
        return self.conv_out(F.silu(self.norm_out(self.mid(x))))


class Decoder(nn.Module):
    def __init__(self, c: CausalVAEConfig) -> None:
        super().__init__()
        levels = len(c.hidden_size_mult)
        cin = c.hidden_size * c.hidden_size_mult[-1]
        size = c.resolution // 2 ** (levels - 1)
        self.conv_in = build_block("conv", c.decoder_conv_in, c.z_channels, cin)
        self.mid = _Mid(cin, c.decoder_mid_resnet, c.decoder_attention)
        up: list[_Level] = []
        for level in reversed(range(levels)):
            cout = c.hidden_size * c.hidden_size_mult[level]
            attention = c.decoder_attention if size in c.attn_resolutions else None
            blocks, attn = _level_blocks(cin, cout, c.decoder_resnet_blocks[level], c.num_res_blocks + 1, attention)
            resample = _resamplers(
                cout,
                ("upsample", "spatial_upsample", c.decoder_spatial_upsample[level]),
                ("time_upsample", "temporal_upsample", c.decoder_temporal_upsample[level]),
            )
            size *= 2 if c.decoder_spatial_upsample[level] else 1
            up.insert(0, _Level(blocks, attn, resample))
            cin = cout
        self.up = nn.ModuleList(up)
        self.norm_out = normalize(cin)
        self.conv_out = build_block("conv", c.decoder_conv_out, cin, 3)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.mid(self.conv_in(z))
        for level in reversed(self.up):
            x = level(x)
        return self.conv_out(F.silu(self.norm_out(x)))


class CausalVAE(nn.Module):
    """Open-Sora-Plan's CausalVAE: videos ``(B, 3, 1 + 4k, H, W)`` <-> latents ``(B, 4, 1 + k, H/8, W/8)``."""

    def __init__(self, config: CausalVAEConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or CausalVAEConfig()
        self.encoder = Encoder(config)
        self.decoder = Decoder(config)
        if config.use_quant_layer:
            moments = 2 * config.z_channels if config.double_z else config.z_channels
            self.quant_conv = build_block("quant", config.q_conv, moments, 2 * config.embed_dim)
            self.post_quant_conv = build_block("quant", config.q_conv, config.embed_dim, config.z_channels)
        self.tiling: CausalVAETiling | None = None

    @property
    def latent_channels(self) -> int:
        return self.config.embed_dim if self.config.use_quant_layer else self.config.z_channels

    def latent_shape(self, num_frames: int, height: int, width: int) -> tuple[int, int, int, int]:
        """``(C, T', h, w)`` of the latents of a ``num_frames x height x width`` video."""
        self._check_video_size(num_frames, height, width)
        s, t = self.config.spatial_factor, self.config.time_factor
        return (self.latent_channels, 1 + (num_frames - 1) // t, height // s, width // s)

    def enable_tiling(self, tiling: CausalVAETiling | None = None) -> None:
        """Encode and decode large videos in overlapping tiles (:data:`TILING_V1_2` unless given).

        The tile must be whole latents and overlap them by whole latents, else tiles would not line up; a
        temporal chunk must be ``1 + 4k`` frames.
        """
        tiling = tiling or TILING_V1_2
        factor = self.config.spatial_factor
        latent_tile = tiling.sample_size / factor
        if tiling.sample_size % factor or (latent_tile * tiling.overlap) % 1:
            raise ValueError(
                f"sample_size={tiling.sample_size} with overlap={tiling.overlap} does not tile latents of "
                f"{factor}x{factor} pixels: sample_size / {factor} and sample_size / {factor} * overlap must be "
                "whole numbers"
            )
        if (tiling.sample_frames - 1) % self.config.time_factor:
            raise ValueError(
                f"sample_frames={tiling.sample_frames} is not 1 + {self.config.time_factor}k: temporal chunks "
                "would not encode to whole latent frames"
            )
        self.tiling = tiling

    def disable_tiling(self) -> None:
        self.tiling = None

    def _check_video_size(self, frames: int, height: int, width: int) -> None:
        s, t = self.config.spatial_factor, self.config.time_factor
        if (frames - 1) % t or frames < 1:
            raise ValueError(f"video has {frames} frames; the CausalVAE needs 1 + {t}k frames (1, {1 + t}, ...)")
        if height % s or width % s:
            raise ValueError(f"video is {height}x{width}; the CausalVAE needs height and width multiples of {s}")

    def _moments(self, video: torch.Tensor) -> torch.Tensor:
        h = self.encoder(video)
        return self.quant_conv(h) if self.config.use_quant_layer else h

    def _decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.post_quant_conv(z) if self.config.use_quant_layer else z)

    def encode(
        self, video: torch.Tensor, *, generator: torch.Generator | None = None, sample: bool = True
    ) -> torch.Tensor:
        """Latents of ``video`` ``(B, 3, 1 + 4k, H, W)`` in [-1, 1]: a posterior draw, or its mean.

        Draws use ``generator`` on its device (CPU by default), so the original run after
        ``torch.manual_seed(s)`` equals ours with a CPU generator seeded ``s``.
        """
        if video.ndim != 5 or video.shape[1] != 3:
            raise ValueError(f"video must be (B, 3, T, H, W), got shape {tuple(video.shape)}")
        self._check_video_size(*video.shape[2:])
        tiling = self.tiling
        if tiling is not None and (max(video.shape[-2:]) > tiling.sample_size or video.shape[2] > tiling.sample_frames):
            moments = self._tiled(video, self._moments, tiling, encode=True)
        else:
            moments = self._moments(video)
        posterior = DiagonalGaussian(moments)
        return posterior.sample(generator) if sample else posterior.mean

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Video ``(B, 3, 1 + 4(T' - 1), 8h, 8w)`` in about [-1, 1] from latents ``(B, C, T', h, w)``."""
        if latents.ndim != 5 or latents.shape[1] != self.latent_channels:
            raise ValueError(f"latents must be (B, {self.latent_channels}, T', h, w), got shape {tuple(latents.shape)}")
        tiling = self.tiling
        if tiling is not None:
            tile = tiling.sample_size // self.config.spatial_factor
            if max(latents.shape[-2:]) > tile or latents.shape[2] > tiling.latent_frames:
                return self._tiled(latents, self._decode, tiling, encode=False)
        return self._decode(latents)

    def _tiled(self, x: torch.Tensor, fn, tiling: CausalVAETiling, *, encode: bool) -> torch.Tensor:
        """The original's ``tiled_encode``/``tiled_decode``: temporal chunks, each in blended spatial tiles."""
        sample_tile = tiling.sample_size
        latent_tile = sample_tile // self.config.spatial_factor
        tile_in, tile_out = (sample_tile, latent_tile) if encode else (latent_tile, sample_tile)
        stride = int(tile_in * (1 - tiling.overlap))
        blend = int(tile_out * tiling.overlap)
        chunk = tiling.sample_frames if encode else tiling.latent_frames
        outputs = []
        for index, (start, end) in enumerate(time_chunks(x.shape[2], chunk)):
            out = tiled_2d(
                x[:, :, start:end],
                fn,
                tile=tile_in,
                stride=stride,
                blend=blend,
                keep=tile_out - blend,
                progress=tiling.progress,
            )
            outputs.append(out if index == 0 else out[:, :, 1:])
        return torch.cat(outputs, dim=2)

    @classmethod
    def from_pretrained(
        cls,
        folder: str | os.PathLike,
        *,
        dtype: torch.dtype = torch.float32,
        device: str | torch.device = "cpu",
        allow_bin: bool = False,
    ) -> CausalVAE:
        """Load a release's ``vae/`` folder (``config.json`` + ``diffusion_pytorch_model.safetensors``).

        ``loss.*`` tensors (the training loss's networks, which v1.1.0's training class carried) are
        dropped; any other missing, unexpected or wrongly shaped weight raises
        :class:`~videosys.models.loading.CheckpointError` naming it.
        """
        try:
            config = CausalVAEConfig.from_dict(read_config(folder))
        except ValueError as error:
            raise CheckpointError(f"{folder}/config.json: {error}") from error
        state_dict = {k: v for k, v in load_state_dict(folder, allow_bin).items() if not k.startswith("loss.")}
        model = cls(config)
        check_keys(model, state_dict, f"checkpoint {folder}")
        model.load_state_dict(state_dict)
        return model.to(device=device, dtype=dtype).eval()
