"""What the video autoencoders share: the causal 3-D convolution, the diagonal Gaussian posterior, per-frame maps.

Open-Sora's temporal VAE and Open-Sora-Plan's CausalVAE both convolve causally in time (all temporal
padding in front, so frame t sees only frames <= t); they differ only in what fills that padding (zeros
vs copies of the first frame) and how much of it there is, which :class:`CausalConv3d` takes as arguments.
Both keep the ``nn.Conv3d`` at ``.conv``, the key layout of their published checkpoints.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["CausalConv3d", "DiagonalGaussian", "per_frame", "triple"]


def per_frame(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """``fn`` over every frame of ``(B, C, T, H, W)`` as one batch of ``B * T`` images."""
    b, _, t = x.shape[:3]
    out = fn(x.transpose(1, 2).flatten(0, 1))
    return out.unflatten(0, (b, t)).transpose(1, 2)


def triple(value: int | tuple[int, ...]) -> tuple[int, int, int]:
    """``(t, h, w)`` from an int (the same on every axis) or a 3-tuple/list."""
    if isinstance(value, int):
        return (value, value, value)
    if len(value) != 3:
        raise ValueError(f"expected an int or 3 values (t, h, w), got {value!r}")
    return (int(value[0]), int(value[1]), int(value[2]))


class CausalConv3d(nn.Module):
    """A 3-D convolution padded only in front along time: output frame t sees input frames <= t.

    ``time_pad`` frames go in front (default ``kernel_t - 1``), zeros or, with ``replicate_first_frame``,
    copies of the first frame (so a lone first frame is encoded like an image); space is zero-padded by
    ``space_pad`` on each side (default ``kernel // 2``).
    """

    def __init__(
        self,
        cin: int,
        cout: int,
        kernel_size: int | tuple[int, int, int] = 3,
        stride: int | tuple[int, int, int] = 1,
        *,
        time_pad: int | None = None,
        space_pad: int | None = None,
        replicate_first_frame: bool = False,
        bias: bool = True,
    ) -> None:
        super().__init__()
        kernel = triple(kernel_size)
        self.time_pad = kernel[0] - 1 if time_pad is None else time_pad
        pad_h, pad_w = (kernel[1] // 2, kernel[2] // 2) if space_pad is None else (space_pad, space_pad)
        self.pad_mode = "replicate" if replicate_first_frame else "constant"
        self.conv = nn.Conv3d(cin, cout, kernel, stride=triple(stride), padding=(0, pad_h, pad_w), bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.time_pad:
            x = F.pad(x, (0, 0, 0, 0, self.time_pad, 0), mode=self.pad_mode)
        return self.conv(x)


class DiagonalGaussian:
    """The posterior a VAE encoder predicts: mean and log-variance stacked on the channel axis."""

    def __init__(self, moments: torch.Tensor) -> None:
        self.mean, logvar = moments.chunk(2, dim=1)
        self.std = torch.exp(0.5 * logvar.clamp(-30.0, 20.0))

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        """``mean + std * noise``; noise is drawn on the generator's device (CPU by default) so seeds agree anywhere."""
        device = generator.device if generator is not None else torch.device("cpu")
        noise = torch.randn(self.mean.shape, generator=generator, device=device, dtype=self.mean.dtype)
        return self.mean + self.std * noise.to(self.mean.device)
