"""Open-Sora 1.2's temporal VAE: causal 3-D convolutions that compress the 2-D VAE's latents 4x along time.

Module and parameter names follow the published checkpoint (``temporal_vae.encoder.block_res_blocks.0.0.conv1.conv
.weight`` ...), so its weights load unchanged. Convolutions are causal in time (all temporal padding in front),
which is why a clip whose length does not divide by the compression gets its missing frames padded in front
on encode and trimmed from the front on decode.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .common import CausalConv3d, DiagonalGaussian

__all__ = ["TemporalVAE", "TemporalVAEConfig"]


@dataclass(frozen=True)
class TemporalVAEConfig:
    """Shape of the temporal VAE; the defaults are the published ``VAE_Temporal_SD``."""

    channels: int = 4
    """Channels of the 2-D VAE latents it compresses (in and out)."""
    latent_channels: int = 4
    """Channels of its own latents."""
    filters: int = 128
    """Base width; level ``i`` has ``filters * channel_multipliers[i]`` channels."""
    num_res_blocks: int = 4
    """Residual blocks per level (and in the middle)."""
    channel_multipliers: tuple[int, ...] = (1, 2, 2, 4)
    """Width multiplier per level."""
    temporal_downsample: tuple[bool, ...] = (False, True, True)
    """Whether the transition after level ``i`` halves time (two halvings: 4x)."""
    num_groups: int = 32
    """GroupNorm groups."""

    def __post_init__(self) -> None:
        if len(self.temporal_downsample) != len(self.channel_multipliers) - 1:
            raise ValueError(
                f"temporal_downsample needs one entry per level transition ({len(self.channel_multipliers) - 1}), "
                f"got {self.temporal_downsample}"
            )
        bad = [self.filters * m for m in self.channel_multipliers if (self.filters * m) % self.num_groups]
        if bad:
            raise ValueError(f"num_groups={self.num_groups} must divide every level width, not {bad}")

    @property
    def time_factor(self) -> int:
        """How many input frames one latent frame covers."""
        return 2 ** sum(self.temporal_downsample)


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv twice plus a (1x1x1-projected when widths differ) shortcut."""

    def __init__(self, cin: int, cout: int, num_groups: int) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(num_groups, cin)
        self.conv1 = CausalConv3d(cin, cout, bias=False)
        self.norm2 = nn.GroupNorm(num_groups, cout)
        self.conv2 = CausalConv3d(cout, cout, bias=False)
        self.conv3 = CausalConv3d(cin, cout, kernel_size=1, bias=False) if cin != cout else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return h + (self.conv3(x) if self.conv3 is not None else x)


def _res_stack(cin: int, cout: int, config: TemporalVAEConfig) -> nn.ModuleList:
    return nn.ModuleList(
        ResBlock(cin if i == 0 else cout, cout, config.num_groups) for i in range(config.num_res_blocks)
    )


class TemporalEncoder(nn.Module):
    """Levels of residual blocks, a stride-2-in-time convolution between the levels that downsample time."""

    def __init__(self, config: TemporalVAEConfig) -> None:
        super().__init__()
        widths = [config.filters * m for m in config.channel_multipliers]
        self.conv_in = CausalConv3d(config.channels, config.filters, bias=False)
        self.block_res_blocks = nn.ModuleList()
        self.conv_blocks = nn.ModuleList()
        prev = config.filters
        for level, width in enumerate(widths):
            self.block_res_blocks.append(_res_stack(prev, width, config))
            prev = width
            if level < len(widths) - 1:
                down = config.temporal_downsample[level]
                halve = CausalConv3d(width, width, stride=(2, 1, 1), time_pad=1) if down else nn.Identity()
                self.conv_blocks.append(halve)
        self.res_blocks = _res_stack(prev, prev, config)
        self.norm1 = nn.GroupNorm(config.num_groups, prev)
        self.conv2 = CausalConv3d(prev, 2 * config.latent_channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv_in(x)
        for level, blocks in enumerate(self.block_res_blocks):
            for block in blocks:
                x = block(x)
            if level < len(self.conv_blocks):
                x = self.conv_blocks[level](x)
        for block in self.res_blocks:
            x = block(x)
        return self.conv2(F.silu(self.norm1(x)))


class TemporalDecoder(nn.Module):
    """The encoder mirrored; time is doubled by a convolution to twice the channels and depth-to-time."""

    def __init__(self, config: TemporalVAEConfig) -> None:
        super().__init__()
        widths = [config.filters * m for m in config.channel_multipliers]
        self.upsample = config.temporal_downsample
        self.conv1 = CausalConv3d(config.latent_channels, widths[-1])
        self.res_blocks = _res_stack(widths[-1], widths[-1], config)
        levels: list[nn.ModuleList] = []
        convs: list[nn.Module] = []
        prev = widths[-1]
        for level in reversed(range(len(widths))):
            levels.insert(0, _res_stack(prev, widths[level], config))
            prev = widths[level]
            if level > 0:
                convs.insert(0, CausalConv3d(prev, 2 * prev) if self.upsample[level - 1] else nn.Identity())
        self.block_res_blocks = nn.ModuleList(levels)
        self.conv_blocks = nn.ModuleList(convs)
        self.norm1 = nn.GroupNorm(config.num_groups, prev)
        self.conv_out = CausalConv3d(prev, config.channels)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.conv1(z)
        for block in self.res_blocks:
            x = block(x)
        for level in reversed(range(len(self.block_res_blocks))):
            for block in self.block_res_blocks[level]:
                x = block(x)
            if level > 0:
                x = self.conv_blocks[level - 1](x)
                if self.upsample[level - 1]:
                    b, c2, t, h, w = x.shape  # channels (c, 2) -> time (t, 2)
                    x = x.reshape(b, c2 // 2, 2, t, h, w).permute(0, 1, 3, 2, 4, 5).reshape(b, c2 // 2, 2 * t, h, w)
        return self.conv_out(F.silu(self.norm1(x)))


class TemporalVAE(nn.Module):
    """Compresses ``(B, C, T, h, w)`` 2-D latents to ``(B, C', ceil(T / 4), h, w)`` and back."""

    def __init__(self, config: TemporalVAEConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = TemporalEncoder(config)
        self.quant_conv = CausalConv3d(2 * config.latent_channels, 2 * config.latent_channels, kernel_size=1)
        self.post_quant_conv = CausalConv3d(config.latent_channels, config.latent_channels, kernel_size=1)
        self.decoder = TemporalDecoder(config)

    def _front_pad(self, frames: int) -> int:
        return -frames % self.config.time_factor

    def latent_frames(self, frames: int) -> int:
        """Latent frames for ``frames`` input frames (padded up to a multiple of the compression)."""
        return (frames + self._front_pad(frames)) // self.config.time_factor

    def encode(self, x: torch.Tensor) -> DiagonalGaussian:
        x = F.pad(x, (0, 0, 0, 0, self._front_pad(x.shape[2]), 0))
        return DiagonalGaussian(self.quant_conv(self.encoder(x)).to(x.dtype))

    def decode(self, z: torch.Tensor, num_frames: int) -> torch.Tensor:
        """Decode and drop the front padding so exactly ``num_frames`` frames come back."""
        if self.latent_frames(num_frames) != z.shape[2]:
            factor = self.config.time_factor
            raise ValueError(
                f"{z.shape[2]} latent frames decode to {(z.shape[2] - 1) * factor + 1}..{z.shape[2] * factor} "
                f"frames, not num_frames={num_frames}"
            )
        x = self.decoder(self.post_quant_conv(z))
        return x[:, :, self._front_pad(num_frames) :]
