"""Open-Sora-Plan v1.1's text-to-video backbone (upstream ``LatteT2V``) on Latte's parts.

The release is Latte with two differences, both here: the temporal position table's frame positions
are divided by an interpolation scale derived from the latent frame count (1 for ``65x512x512``, 3 for
``221x512x512``), and the caption projection carries a null-caption table
(``caption_projection.y_embedding``) that only training reads.
:meth:`OpenSoraPlanLatte.from_diffusers_config` and :meth:`OpenSoraPlanLatte.convert_diffusers_state_dict`
read the release's ``65x512x512/`` and ``221x512x512/`` folders (``config.json`` +
``diffusion_pytorch_model.safetensors``) through :func:`videosys.models.loading.load_backbone`.
"""

from __future__ import annotations

from typing import Any

import torch

from .common import require_config
from .latte import LatteTransformer, latte_arguments

__all__ = ["OpenSoraPlanLatte", "release_temporal_scale"]

UNUSED_KEYS = ("caption_projection.y_embedding",)
"""Checkpoint tensors inference never reads: the null caption training substitutes for dropped prompts."""


def release_temporal_scale(video_length: int) -> int:
    """The release's divisor of temporal positions: latent frames over Latte's 16, ``(n - 1) // 16`` for odd ``n``.

    17 latent frames (65 video frames) give 1, 56 (221 video frames) give 3; never below 1.
    """
    frames = video_length - 1 if video_length % 2 == 1 else video_length
    return max(frames // 16, 1)


class OpenSoraPlanLatte(LatteTransformer):
    """Open-Sora-Plan v1.1's denoiser: ``(B, C, T, H, W)`` latents, timesteps and T5 features to noise and variance.

    Called like :class:`LatteTransformer` (``enable_temporal_attentions=False`` samples images).
    ``T`` may be at most ``video_length``: the first ``T`` rows of the temporal table are added, as
    Latte does (the original adds the whole table, so it runs exactly ``video_length`` frames, or
    images with temporal attention off). Defaults are the ``65x512x512`` checkpoint's (Latte's sizes,
    ``video_length=17``).
    """

    def __init__(
        self, *, video_length: int = 17, temporal_interpolation_scale: float | None = None, **kwargs: Any
    ) -> None:
        """Arguments as :class:`LatteTransformer`'s; ``temporal_interpolation_scale=None`` derives the scale from
        ``video_length`` as the release does (a given scale is also raised to at least 1, as there)."""
        if temporal_interpolation_scale is None:
            temporal_interpolation_scale = release_temporal_scale(video_length)
        super().__init__(
            video_length=video_length, temporal_interpolation_scale=max(temporal_interpolation_scale, 1), **kwargs
        )

    @classmethod
    def from_diffusers_config(cls, config: dict[str, Any]) -> OpenSoraPlanLatte:
        """Build the architecture a release ``config.json`` (``_class_name: LatteT2V``) describes."""
        require_config(
            config,
            "LatteT2V",
            _class_name="LatteT2V",  # not v1.2's OpenSoraT2V
            norm_type="ada_norm_single",
            activation_fn="gelu-approximate",
            norm_elementwise_affine=False,
            use_rope=False,
            compress_kv_factor=1,
            patch_size_t=1,
            attention_type="default",
            only_cross_attention=False,
            double_self_attention=False,
            num_vector_embeds=None,
        )
        for key in ("in_channels", "patch_size", "sample_size"):
            if config.get(key) is None:
                raise ValueError(f"LatteT2V config has no {key}; the release's config.json sets it")
        sample_size = config["sample_size"]
        if isinstance(sample_size, (list, tuple)):
            if len(sample_size) != 2 or sample_size[0] != sample_size[1]:
                raise ValueError(
                    f"LatteT2V config has sample_size={sample_size}; VideoSys implements a square latent size "
                    "[n, n] (the release's [64, 64])"
                )
            sample_size = sample_size[0]
        arguments = latte_arguments({**config, "sample_size": sample_size}, "LatteT2V")
        return cls(**arguments, temporal_interpolation_scale=config.get("interpolation_scale_1d"))

    @staticmethod
    def convert_diffusers_state_dict(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The release's key names (diffusers Latte's) to ours, without the tensors inference never reads."""
        kept = {key: value for key, value in state_dict.items() if key not in UNUSED_KEYS}
        return LatteTransformer.convert_diffusers_state_dict(kept)
