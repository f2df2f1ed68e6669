"""Self-attention masks under sequence parallelism describe the whole video, as without it."""

from __future__ import annotations

import torch

__all__ = ["whole_video_mask"]


def whole_video_mask(mask: torch.Tensor, video: tuple[int, int, int]) -> torch.Tensor:
    """``mask`` expanded to the whole ``video`` ``(B, T, S)``; raise unless it is boolean and broadcasts to it."""
    try:
        fits = mask.dtype == torch.bool and torch.broadcast_shapes(mask.shape, video) == video
    except RuntimeError:
        fits = False
    if not fits:
        raise ValueError(
            f"under videosys.dsp an attention mask describes the whole video: a boolean tensor broadcastable to "
            f"(B, T, S) = {video}, got {mask.dtype} of shape {tuple(mask.shape)}"
        )
    return mask.expand(video)
