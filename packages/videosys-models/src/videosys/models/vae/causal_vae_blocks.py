"""The building blocks of Open-Sora-Plan's CausalVAE, under the names its ``config.json`` gives them.

Each class keeps the attribute names of the original module of the same name (``norm1``, ``conv1``,
``nin_shortcut``, ``mix_factor``, ``conv.conv`` ...), so the released ``vae/`` weights load unchanged.
Videos are ``(B, C, T, H, W)``. "2-D" blocks act on each frame on its own (their GroupNorm too); the
3-D ones are causal in time: a convolution's missing past is filled with copies of the first frame, and
time is resampled with the first frame kept apart, so frame 0 maps to latent frame 0 alone.

:data:`BLOCKS` lists the names the v1.1.0 and v1.2.0 releases use; anything else is refused by name.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .common import CausalConv3d, per_frame

__all__ = ["BLOCKS", "NORM_GROUPS", "TIME_STRIDED", "build_block", "causal_conv", "normalize"]

NORM_GROUPS = 32
"""GroupNorm groups in every block of the original (``Normalize``), eps 1e-6."""


def normalize(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(NORM_GROUPS, channels, eps=1e-6)


def causal_conv(
    cin: int, cout: int, kernel_size: int | tuple[int, int, int], stride: int | tuple = 1, padding: int = 0
) -> CausalConv3d:
    """The original ``CausalConv3d``: first-frame copies in front, ``padding`` zeros on each side in space only."""
    return CausalConv3d(cin, cout, kernel_size, stride, space_pad=padding, replicate_first_frame=True)


class Conv2d(nn.Conv2d):
    """A 2-D convolution applied frame by frame (weights at ``weight``/``bias``, as stored)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return per_frame(super().forward, x)


def conv3x3(cin: int, cout: int) -> nn.Module:
    """The stem/head ``CausalConv3d`` (``conv_in`` / ``conv_out``): 3x3x3, space padded by one."""
    return causal_conv(cin, cout, 3, padding=1)


def frame_conv3x3(cin: int, cout: int) -> nn.Module:
    """The stem ``Conv2d``: 3x3 per frame, padded by one."""
    return Conv2d(cin, cout, 3, padding=1)


def quant_conv(cin: int, cout: int) -> nn.Module:
    """The 1x1x1 quant layers' ``CausalConv3d``."""
    return causal_conv(cin, cout, 1)


class _ResnetBlock(nn.Module):
    """GroupNorm-SiLU-conv twice plus a (1x1-projected when widths differ) shortcut; dropout is inference-off."""

    def __init__(self, cin: int, cout: int, conv: Callable[[int, int, int, int], nn.Module]) -> None:
        super().__init__()
        self.norm1 = normalize(cin)
        self.conv1 = conv(cin, cout, 3, 1)
        self.norm2 = normalize(cout)
        self.conv2 = conv(cout, cout, 3, 1)
        self.nin_shortcut = conv(cin, cout, 1, 0) if cin != cout else None

    def _residual(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return (self.nin_shortcut(x) if self.nin_shortcut is not None else x) + h


class ResnetBlock2D(_ResnetBlock):
    """Per-frame residual block (its norms see one frame at a time)."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(cin, cout, lambda i, o, k, p: nn.Conv2d(i, o, k, padding=p))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return per_frame(self._residual, x)


class ResnetBlock3D(_ResnetBlock):
    """Causal 3-D residual block."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(cin, cout, lambda i, o, k, p: causal_conv(i, o, k, padding=p))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._residual(x)


class AttnBlock3DFix(nn.Module):
    """Single-head self-attention over the pixels of each frame (the original's fixed 3-D attention block)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = normalize(channels)
        self.q, self.k, self.v, self.proj_out = (causal_conv(channels, channels, 1) for _ in range(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm(x)
        b, c, t, hh, ww = x.shape

        def tokens(y: torch.Tensor) -> torch.Tensor:  # (B, C, T, H, W) -> (B*T, 1, H*W, C)
            return y.permute(0, 2, 3, 4, 1).reshape(b * t, 1, hh * ww, c)

        out = F.scaled_dot_product_attention(tokens(self.q(h)), tokens(self.k(h)), tokens(self.v(h)))
        out = out.reshape(b, t, hh, ww, c).permute(0, 4, 1, 2, 3)
        return x + self.proj_out(out)


class Downsample(nn.Module):
    """Per-frame 2x spatial downsampling: pad right/bottom by one, 3x3 stride-2 convolution."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return per_frame(lambda f: self.conv(F.pad(f, (0, 1, 0, 1))), x)


class Spatial2xTime2x3DDownsample(nn.Module):
    """2x in space and time at once: right/bottom zero pad, causal 3x3x3 stride-2 convolution."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv = causal_conv(cin, cout, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class TimeDownsampleRes2x(nn.Module):
    """2x in time: a learned mix (``sigmoid(mix_factor)``) of average pooling and a stride-2 convolution."""

    def __init__(self, cin: int, cout: int, kernel_size: int = 3, mix_factor: float = 2.0) -> None:
        super().__init__()
        self.time_pad = kernel_size - 1
        self.avg_pool = nn.AvgPool3d((kernel_size, 1, 1), stride=(2, 1, 1))
        self.conv = nn.Conv3d(cin, cout, kernel_size, stride=(2, 1, 1), padding=(0, 1, 1))
        self.mix_factor = nn.Parameter(torch.tensor([mix_factor]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        alpha = torch.sigmoid(self.mix_factor)
        x = F.pad(x, (0, 0, 0, 0, self.time_pad, 0), mode="replicate")
        return alpha * self.avg_pool(x) + (1 - alpha) * self.conv(x)


def upsample_time(x: torch.Tensor, space: int) -> torch.Tensor:
    """Frames after the first doubled in time by trilinear interpolation; all scaled ``space`` x in H and W."""
    first, rest = x[:, :, :1], x[:, :, 1:]
    if space != 1:
        first = F.interpolate(first, scale_factor=(1, space, space), mode="trilinear")
    if rest.shape[2] == 0:
        return first
    return torch.cat([first, F.interpolate(rest, scale_factor=(2, space, space), mode="trilinear")], dim=2)


class TimeUpsampleRes2x(nn.Module):
    """2x in time (first frame kept apart), mixed by ``sigmoid(mix_factor)`` with a causal convolution of it."""

    def __init__(self, cin: int, cout: int, kernel_size: int = 3, mix_factor: float = 2.0) -> None:
        super().__init__()
        self.conv = causal_conv(cin, cout, kernel_size, padding=1)
        self.mix_factor = nn.Parameter(torch.tensor([mix_factor]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        alpha = torch.sigmoid(self.mix_factor)
        x = upsample_time(x, space=1)
        return alpha * x + (1 - alpha) * self.conv(x)


class SpatialUpsample2x(nn.Module):
    """Per-frame nearest 2x upsampling, then a 1x3x3 convolution."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv = causal_conv(cin, cout, (1, 3, 3), padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(per_frame(lambda f: F.interpolate(f, scale_factor=2.0, mode="nearest"), x))


class Spatial2xTime2x3DUpsample(nn.Module):
    """2x in space and time (first frame only in space), trilinear, then a causal 3x3x3 convolution."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv = causal_conv(cin, cout, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(upsample_time(x, space=2))


BLOCKS: dict[str, dict[str, Callable[..., nn.Module]]] = {
    "conv": {"Conv2d": frame_conv3x3, "CausalConv3d": conv3x3},
    "quant": {"CausalConv3d": quant_conv},
    "resnet": {"ResnetBlock2D": ResnetBlock2D, "ResnetBlock3D": ResnetBlock3D},
    "attention": {"AttnBlock3DFix": AttnBlock3DFix},
    "spatial_downsample": {"Downsample": Downsample, "Spatial2xTime2x3DDownsample": Spatial2xTime2x3DDownsample},
    "temporal_downsample": {"TimeDownsampleRes2x": TimeDownsampleRes2x},
    "spatial_upsample": {
        "SpatialUpsample2x": SpatialUpsample2x,
        "Spatial2xTime2x3DUpsample": Spatial2xTime2x3DUpsample,
    },
    "temporal_upsample": {"TimeUpsampleRes2x": TimeUpsampleRes2x},
}
"""Block names per role, as the v1.1.0 and v1.2.0 ``config.json`` files spell them."""

TIME_STRIDED = {"Spatial2xTime2x3DDownsample", "TimeDownsampleRes2x", "Spatial2xTime2x3DUpsample", "TimeUpsampleRes2x"}
"""Blocks that halve (encoder) or double (decoder) time."""


def build_block(role: str, name: str, *channels: int) -> nn.Module:
    """The block ``name`` (checked by the config) for ``role``, a key of :data:`BLOCKS`."""
    return BLOCKS[role][name](*channels)
