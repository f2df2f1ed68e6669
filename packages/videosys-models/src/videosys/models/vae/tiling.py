"""Overlapping-tile evaluation of a video autoencoder, so large videos encode and decode in bounded memory.

The scheme is the one diffusers' ``AutoencoderKL`` and Open-Sora-Plan's CausalVAE use: the input is cut into
square tiles every ``stride`` pixels, each tile goes through the network on its own, and each output tile is
linearly cross-faded into its upper and left neighbours over ``blend`` pixels (neighbours already blended,
in raster order) before being cropped to ``keep`` pixels and stitched. :func:`time_chunks` gives the
temporal chunks for a causal model: consecutive chunks share one frame, whose duplicate is dropped.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from tqdm.auto import tqdm

__all__ = ["blend_into", "tiled_2d", "time_chunks"]


def blend_into(before: torch.Tensor, after: torch.Tensor, extent: int, dim: int) -> torch.Tensor:
    """Cross-fade ``before``'s last ``extent`` entries along ``dim`` into ``after``'s first ones, in place.

    Entry ``i`` becomes ``before[-extent + i] * (1 - i / extent) + after[i] * (i / extent)``; ``extent`` is
    clipped to both sizes. Returns ``after``.
    """
    extent = min(before.shape[dim], after.shape[dim], extent)
    if extent <= 0:
        return after
    ramp = torch.arange(extent, dtype=torch.float64) / extent
    shape = [1] * after.ndim
    shape[dim] = extent
    ramp = ramp.reshape(shape)
    head = after.narrow(dim, 0, extent)
    tail = before.narrow(dim, before.shape[dim] - extent, extent)
    weight_after = ramp.to(device=after.device, dtype=after.dtype)
    weight_before = (1 - ramp).to(device=after.device, dtype=after.dtype)
    head.copy_(tail * weight_before + head * weight_after)
    return after


def tiled_2d(
    x: torch.Tensor,
    fn: Callable[[torch.Tensor], torch.Tensor],
    *,
    tile: int,
    stride: int,
    blend: int,
    keep: int,
    progress: bool = True,
) -> torch.Tensor:
    """``fn`` over ``tile`` x ``tile`` windows of ``x`` (last two dims) every ``stride``, blended and stitched.

    Output tiles are cross-faded over ``blend`` entries into their upper and left neighbours and cropped to
    ``keep`` x ``keep``. Only one row of output tiles is held besides the result. ``progress`` shows a tqdm
    bar over the tiles when stderr is a terminal.
    """
    if stride <= 0 or keep <= 0:
        raise ValueError(f"tile stride and kept size must be positive, got stride={stride}, keep={keep}")
    rows_at = range(0, x.shape[-2], stride)
    cols_at = range(0, x.shape[-1], stride)
    bar = tqdm(total=len(rows_at) * len(cols_at), desc="VAE tiles", leave=False, disable=None if progress else True)
    out_rows, above = [], None
    for i in rows_at:
        row = []
        for j in cols_at:
            row.append(fn(x[..., i : i + tile, j : j + tile]))
            bar.update()
        for j, out in enumerate(row):
            if above is not None:
                blend_into(above[j], out, blend, dim=-2)
            if j > 0:
                blend_into(row[j - 1], out, blend, dim=-1)
        out_rows.append(torch.cat([out[..., :keep, :keep] for out in row], dim=-1))
        above = row
    bar.close()
    return torch.cat(out_rows, dim=-2)


def time_chunks(length: int, chunk: int) -> list[tuple[int, int]]:
    """``[start, end)`` chunks of at most ``chunk`` frames, each starting on the previous one's last frame.

    Chunks start every ``chunk - 1`` frames; a short remainder after the last full chunk is its own chunk
    (Open-Sora-Plan's CausalVAE splits time this way; every chunk but the first drops its first output frame).
    """
    if chunk < 2:
        raise ValueError(f"a temporal chunk needs at least 2 frames (one shared), got {chunk}")
    starts = list(range(0, length, chunk - 1))
    if len(starts) == 1:
        return [(0, length)]
    spans = [(starts[i], min(starts[i + 1] + 1, length)) for i in range(len(starts) - 1)]
    if spans[-1][1] < length:
        spans.append((starts[-1], length))
    return spans
