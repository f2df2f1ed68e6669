"""A user's own video DiT on the VideoSys core interfaces, sampled end to end into a GIF.

    python examples/custom_model.py --out outputs/custom_model.gif [--pab]

The model is randomly initialised (no download): this shows the interfaces, the sampling-step
context and, with ``--pab`` (needs videosys-pab), Pyramid Attention Broadcast applied to a model
VideoSys has never seen.
"""

from __future__ import annotations

import argparse

import torch
from torch import nn

from videosys.core import Branch, Conditioning, SelfAttention, STBackbone, STBlock, check_backbone, denoising_step
from videosys.core.io import save_video, to_uint8_frames
from videosys.core.layers import FeedForward, FinalLayer, PatchEmbed2D, TimestepEmbedder, unpatchify


class MyBlock(STBlock):
    """A pre-norm transformer block whose attention mixes one axis, conditioned by a timestep shift."""

    def __init__(self, dim: int, heads: int, axis: str) -> None:
        super().__init__()
        self.attn = Branch(SelfAttention(dim, heads, axis), nn.LayerNorm(dim))
        self.mlp = Branch(FeedForward(dim, 4 * dim), nn.LayerNorm(dim))

    def forward(self, x: torch.Tensor, cond: Conditioning) -> torch.Tensor:
        shift = cond.modulation[:, None, None, :]
        x = x + self.attn(x, shift=shift)
        return x + self.mlp(x, shift=shift)


class MyVideoDiT(STBackbone):
    def __init__(self, channels: int = 4, dim: int = 64, heads: int = 4, depth: int = 2, patch: int = 2) -> None:
        super().__init__()
        self.channels, self.patch = channels, patch
        self.patch_embed = PatchEmbed2D(patch, channels, dim)
        self.t_embed = TimestepEmbedder(dim)
        self.blocks = nn.ModuleList(MyBlock(dim, heads, axis) for _ in range(depth) for axis in ("spatial", "temporal"))
        self.final = FinalLayer(dim, patch * patch * channels)

    def embed(self, latents: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, Conditioning]:
        self.grid = (latents.shape[-2] // self.patch, latents.shape[-1] // self.patch)
        return self.patch_embed(latents), Conditioning(modulation=self.t_embed(t))

    def head(self, x: torch.Tensor, cond: Conditioning) -> torch.Tensor:
        return unpatchify(self.final(x, cond.modulation), self.channels, (1, self.patch, self.patch), self.grid)


@torch.no_grad()
def sample(model: MyVideoDiT, frames: int, size: int, steps: int, seed: int) -> torch.Tensor:
    """Euler steps of a rectified-flow sampler from t=1000 to 0, each inside the denoising-step context."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(1, model.channels, frames, size, size, generator=generator)
    timesteps = torch.linspace(1000, 0, steps + 1)
    for i in range(steps):
        t = timesteps[i]
        with denoising_step(i, t, steps):
            velocity = model(x, t.expand(x.shape[0]))
        x = x + (timesteps[i + 1] - t) / 1000 * velocity
    return x


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="outputs/custom_model.gif")
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--pab", action="store_true", help="reuse attention: spatial every 2, temporal every 4 steps")
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    model = MyVideoDiT().eval()
    check_backbone(model)
    if args.pab:
        from videosys.pab import Broadcast, PABConfig, enable, stats

        enable(model, PABConfig(spatial=Broadcast(2, window=(100, 950)), temporal=Broadcast(4, window=(100, 950))))
    latents = sample(model, args.frames, args.size, args.steps, args.seed)
    if args.pab:
        print("PAB calls per kind:", stats(model))
    video = torch.tanh(latents[0, :3])  # show three latent channels as RGB
    path = save_video(to_uint8_frames(video), args.out, fps=8)
    print(f"sampled {args.frames} frames of {args.size}x{args.size} in {args.steps} steps -> {path}")


if __name__ == "__main__":
    main()
