"""Open-Sora 1.2's rectified-flow sampler: shifted timesteps, Euler steps on the predicted velocity, CFG.

The model predicts the velocity ``v = x0 - noise`` along the straight path ``x_t = s x0 + (1 - s) noise``
(``s = 1 - t / 1000``). Sampling walks ``t`` from 1000 down in ``num_steps`` Euler steps. Bigger videos need
more steps spent at high noise, so the uniform grid is shifted by ``t' = r t / (1 + (r - 1) t)`` (t in
[0, 1]) with ``r = sqrt(H W / 512^2) * sqrt(5 * (num_frames // 17))`` (``r = sqrt(H W / 512^2)`` for one
frame): 480x854, 51 frames, 30 steps gives 1000, 992.93, 985.47, ..., 143.105.

Conditioning frames (image-to-video, continuing a clip) come through a per-frame ``mask`` in [0, 1]: 0 for a
frame given in full, 1 for a frame generated from noise, and in between to re-generate a given frame from
timestep ``1000 * mask`` on. A given frame stays clean until the sampler reaches its timestep; the model is
told which frames it is denoising through ``x_mask`` (the others are modulated with timestep 0).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from videosys.core import denoising_step

__all__ = ["RectifiedFlow", "VelocityFn", "timestep_shift"]

VelocityFn = Callable[[torch.Tensor, torch.Tensor, "torch.Tensor | None"], torch.Tensor]
"""``model_fn(z, t, x_mask)``: model output for latents ``(N, C, T, h, w)``, timesteps ``(N,)`` and the
bool ``(N, T)`` mask of frames being denoised (None without conditioning frames). The velocity is its first
``C`` channels (STDiT3 appends its predicted variance)."""

BASE_PIXELS = 512 * 512
VAE_MICRO_FRAMES = 17
"""Open-Sora 1.2's VAE turns each 17 frames into 5 latent frames; the shift counts latent frames this way."""
VAE_MICRO_LATENT_FRAMES = 5


def timestep_shift(t: float, *, height: int, width: int, num_frames: int) -> float:
    """Open-Sora 1.2's resolution- and length-dependent shift of a timestep ``t`` in [0, 1].

    Defined for images and for videos of at least one VAE micro-clip (17 frames); the original's formula
    degenerates to ``r = 0`` in between.
    """
    for name, value in (("height", height), ("width", width), ("num_frames", num_frames)):
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    if 1 < num_frames < VAE_MICRO_FRAMES:
        raise ValueError(
            f"the timestep shift needs num_frames == 1 or >= {VAE_MICRO_FRAMES} (its length factor is "
            f"num_frames // {VAE_MICRO_FRAMES} * {VAE_MICRO_LATENT_FRAMES}), got {num_frames}"
        )
    frames = 1 if num_frames == 1 else num_frames // VAE_MICRO_FRAMES * VAE_MICRO_LATENT_FRAMES
    ratio = math.sqrt(height * width / BASE_PIXELS) * math.sqrt(frames)
    return ratio * t / (1 + (ratio - 1) * t)


@dataclass(frozen=True)
class RectifiedFlow:
    """The sampler; the defaults are Open-Sora 1.2's inference settings (30 steps, guidance 7.0, shift on)."""

    num_steps: int = 30
    """Euler steps."""
    guidance_scale: float = 7.0
    """Classifier-free guidance weight (the model's batch is ``[conditional; unconditional]``)."""
    num_timesteps: int = 1000
    """The timestep scale the model was trained on."""
    use_timestep_transform: bool = True
    """Apply :func:`timestep_shift`."""
    use_discrete_timesteps: bool = False
    """Round the uniform grid to integers before shifting."""

    def __post_init__(self) -> None:
        if self.num_steps < 1:
            raise ValueError(f"num_steps must be >= 1, got {self.num_steps}")

    def timesteps(self, *, height: int, width: int, num_frames: int) -> torch.Tensor:
        """The ``num_steps`` timesteps on the 0..``num_timesteps`` scale, from ``num_timesteps`` down (float64).

        ``height``/``width`` are the video's pixels, ``num_frames`` its frames (not latent sizes).
        """
        scale = self.num_timesteps
        grid = [(1.0 - i / self.num_steps) * scale for i in range(self.num_steps)]
        if self.use_discrete_timesteps:
            grid = [float(round(t)) for t in grid]
        if self.use_timestep_transform:
            size = {"height": height, "width": width, "num_frames": num_frames}
            grid = [timestep_shift(t / scale, **size) * scale for t in grid]
        return torch.tensor(grid, dtype=torch.float64)

    def add_noise(self, clean: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """``clean`` at timesteps ``t`` (one per sample): ``s clean + (1 - s) noise``, ``s = 1 - t / num_timesteps``."""
        s = (1 - t.float() / self.num_timesteps).reshape(-1, *([1] * (clean.dim() - 1)))
        return s * clean + (1 - s) * noise

    def _check_mask(self, mask: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        if tuple(mask.shape) != (z.shape[0], z.shape[2]):
            raise ValueError(f"mask must be (B, T) = {(z.shape[0], z.shape[2])} for latents {tuple(z.shape)}, "
                             f"got {tuple(mask.shape)}")
        if mask.min() < 0 or mask.max() > 1:
            raise ValueError(f"mask values must lie in [0, 1] (0: frame given, 1: generated), got {mask.tolist()}")
        return mask.to(z.device, torch.float32)

    @torch.no_grad()
    def sample(
        self,
        model_fn: VelocityFn,
        z: torch.Tensor,
        *,
        height: int,
        width: int,
        num_frames: int,
        mask: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        progress: bool = True,
    ) -> torch.Tensor:
        """Denoise ``z`` ``(B, C, T, h, w)`` (noise, with given frames' clean latents written in) to clean latents.

        ``mask`` ``(B, T)`` marks given frames (module docstring); the noise that enters a given frame when
        its turn comes is drawn from ``generator`` at every step, as the original draws it. Each step runs
        inside :func:`videosys.core.denoising_step`.
        """
        timesteps = self.timesteps(height=height, width=width, num_frames=num_frames).tolist()
        batch = z.shape[0]
        if mask is not None:
            mask_t = self._check_mask(mask, z) * self.num_timesteps
            noised = mask_t >= self.num_timesteps  # frames that start as noise
        for i, step_t in enumerate(tqdm(timesteps, desc="rectified flow", disable=not progress)):
            t = torch.full((batch,), step_t, device=z.device, dtype=torch.float32)
            x_mask = None
            with denoising_step(i, step_t, len(timesteps)):
                if mask is not None:
                    held = z.clone()
                    draw = generator.device if generator is not None else z.device
                    noise = torch.randn(z.shape, generator=generator, device=draw, dtype=z.dtype).to(z.device)
                    x_mask = mask_t >= t[:, None]
                    enter = (x_mask & ~noised)[:, None, :, None, None]
                    z = torch.where(enter, self.add_noise(held, noise, t), held)
                    noised = x_mask
                output = model_fn(torch.cat([z, z]), torch.cat([t, t]), None if x_mask is None else x_mask.repeat(2, 1))
                cond, uncond = output[:, : z.shape[1]].chunk(2)
                velocity = uncond + self.guidance_scale * (cond - uncond)
                next_t = timesteps[i + 1] if i + 1 < len(timesteps) else 0.0
                z = z + velocity * ((step_t - next_t) / self.num_timesteps)
                if mask is not None:
                    z = torch.where(x_mask[:, None, :, None, None], z, held)
        return z
