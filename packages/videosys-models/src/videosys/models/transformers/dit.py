"""DiT (class-conditional images, DiT-XL/2 256 and 512) on the VideoSys core: spatial adaLN-zero blocks, T == 1.

Numerics follow diffusers' ``DiTTransformer2DModel``. diffusers stores the timestep and class embedders
inside every block (``transformer_blocks.{i}.norm1.emb``) because its conversion copied the original
DiT's single shared embedders into each block; the forward pass also conditions the output layer on
block 0's copy. We keep one shared embedder, as the original does, and the loader checks that every
block's copy is identical (it is in the published checkpoints) instead of silently picking one.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from videosys.core import AdaLNBlock, AttentionAxis, Conditioning
from videosys.core.layers import FinalLayer, LabelEmbedder, TimestepEmbedder

from ..loading import DIFFUSERS_BLOCK_RULES, CheckpointError, rename_keys
from .common import PatchedBackbone, batch_timesteps, require_config

__all__ = ["DiTTransformer"]

_EMBEDDER_PREFIX = "transformer_blocks.{}.norm1.emb."


class DiTTransformer(PatchedBackbone):
    """DiT's denoiser: ``(B, C, H, W)`` latents, timesteps and class labels to noise and variance.

    Class label ``num_classes`` is the null class used for classifier-free guidance.
    """

    def __init__(
        self,
        *,
        num_layers: int = 28,
        num_heads: int = 16,
        head_dim: int = 72,
        in_channels: int = 4,
        out_channels: int = 8,
        patch_size: int = 2,
        sample_size: int = 32,
        num_classes: int = 1000,
        attention_bias: bool = True,
        norm_eps: float = 1e-5,
    ) -> None:
        dim = num_heads * head_dim
        super().__init__(dim, in_channels, out_channels, patch_size, sample_size)
        # diffusers' DiT embeds timesteps with downscale_freq_shift=1 (frequencies 10000^(-i/(half-1))).
        self.t_embedder = TimestepEmbedder(dim, downscale_freq_shift=1.0)
        self.y_embedder = LabelEmbedder(num_classes, dim)
        blocks = []
        for _ in range(num_layers):
            block = AdaLNBlock(dim, num_heads, AttentionAxis.SPATIAL, modulation="linear", qkv_bias=attention_bias)
            # The attention input is normalised with eps 1e-6 (adaLN-zero), the MLP input with the config's eps.
            block.mlp.norm = nn.LayerNorm(dim, eps=norm_eps, elementwise_affine=False)
            blocks.append(block)
        self.blocks = nn.ModuleList(blocks)
        self.final = FinalLayer(dim, patch_size * patch_size * out_channels, modulation="linear")

    @property
    def null_class(self) -> int:
        """The class label of the unconditional branch of classifier-free guidance."""
        return self.y_embedder.null_class

    def embed(
        self, latents: torch.Tensor, timestep: torch.Tensor | float, class_labels: torch.Tensor
    ) -> tuple[torch.Tensor, Conditioning]:
        """Patchify ``latents: (B, C, H, W)`` and embed timestep plus class label into the adaLN input."""
        if latents.dim() != 4:
            raise ValueError(f"DiT latents must be (B, C, H, W), got shape {tuple(latents.shape)}")
        b = latents.shape[0]
        x, grid = self.patchify(latents[:, :, None])
        labels = torch.as_tensor(class_labels, device=x.device).reshape(-1)
        if labels.shape[0] != b:
            raise ValueError(f"got {labels.shape[0]} class labels for a batch of {b} latents")
        c = self.t_embedder(batch_timesteps(timestep, b, x.device), dtype=x.dtype) + self.y_embedder(labels)
        return x, Conditioning(modulation=c, extras={"grid": grid})

    def head(self, x: torch.Tensor, cond: Conditioning) -> torch.Tensor:
        x = self.final(x, cond.modulation)
        return self.unpatchify(x, cond.extras["grid"])[:, :, 0]

    @classmethod
    def from_diffusers_config(cls, config: dict[str, Any]) -> DiTTransformer:
        """Build the architecture that a diffusers ``DiTTransformer2DModel`` ``config.json`` describes."""
        require_config(
            config,
            "DiTTransformer2DModel",
            norm_type="ada_norm_zero",
            activation_fn="gelu-approximate",
            norm_elementwise_affine=False,
        )
        in_channels = config.get("in_channels", 4)
        return cls(
            num_layers=config.get("num_layers", 28),
            num_heads=config.get("num_attention_heads", 16),
            head_dim=config.get("attention_head_dim", 72),
            in_channels=in_channels,
            out_channels=config.get("out_channels") or in_channels,
            patch_size=config.get("patch_size", 2),
            sample_size=config.get("sample_size", 32),
            num_classes=config.get("num_embeds_ada_norm", 1000),
            attention_bias=config.get("attention_bias", True),
            norm_eps=config.get("norm_eps", 1e-5),
        )

    @staticmethod
    def convert_diffusers_state_dict(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """diffusers' DiT key names to ours, after checking every block holds the same embedders."""
        shared = _EMBEDDER_PREFIX.format(0)
        state_dict = dict(state_dict)
        for key in [k for k in state_dict if ".norm1.emb." in k and not k.startswith(shared)]:
            reference = shared + key.split(".norm1.emb.", 1)[1]
            if reference not in state_dict:
                raise CheckpointError(f"checkpoint has {key} but no {reference}")
            if not torch.equal(state_dict[key], state_dict[reference]):
                raise CheckpointError(
                    f"checkpoint key {key} differs from {reference}: VideoSys's DiT shares one timestep/class "
                    "embedder between blocks, as the original DiT and the published diffusers checkpoints do"
                )
            del state_dict[key]
        return rename_keys(state_dict, _DIT_RULES)


_DIT_RULES = [
    (r"^pos_embed\.proj\.", "patch_embed.proj."),
    (r"^transformer_blocks\.0\.norm1\.emb\.timestep_embedder\.", "t_embedder."),
    (r"^transformer_blocks\.0\.norm1\.emb\.class_embedder\.", "y_embedder."),
    (r"^transformer_blocks\.(\d+)\.norm1\.linear\.", r"blocks.\1.adaLN_modulation.1."),
    (r"^transformer_blocks\.(\d+)\.", r"blocks.\1."),
    (r"^proj_out_1\.", "final.adaLN_modulation.1."),
    (r"^proj_out_2\.", "final.linear."),
    *DIFFUSERS_BLOCK_RULES,
]
