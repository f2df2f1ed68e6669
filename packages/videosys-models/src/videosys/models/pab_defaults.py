"""Pyramid Attention Broadcast settings published with each model, as ``videosys.pab.PABConfig`` values.

They live with the model, not in ``videosys-pab``: a model's defaults are a fact about the model. MLP
reuse is keyed by positions in the sampling loop (fractions of it), never by exact timestep values, so
it behaves the same under any scheduler and step count; the docstrings name the timesteps the original
used.
"""

from __future__ import annotations

from videosys.pab import Broadcast, MLPReuse, PABConfig

__all__ = [
    "COGVIDEOX_PAB",
    "EMBEDDED_PAB",
    "LATTE_PAB",
    "OPENSORA_PAB",
    "OPENSORA_PLAN_V11_PAB",
    "OPENSORA_PLAN_V12_PAB",
    "WAN_PAB",
]


def _loop_positions(steps: tuple[int, ...], num_steps: int) -> tuple[float, ...]:
    """Step indices of a ``num_steps`` loop as fractions of it."""
    return tuple(step / num_steps for step in steps)


def _pyramid(spatial: int, temporal: int, cross: int, window: tuple[float, float], mlp: MLPReuse) -> PABConfig:
    return PABConfig(
        spatial=Broadcast(spatial, window=window),
        temporal=Broadcast(temporal, window=window),
        cross=Broadcast(cross, window=window),
        mlp=mlp,
    )


LATTE_PAB = _pyramid(
    2, 3, 6, (100, 800), MLPReuse((0, 1, 2, 3, 4), at=_loop_positions((13, 17, 21, 25, 29), 50), unit="fraction")
)
"""Latte-1: spatial 2 / temporal 3 / cross 6 on (100, 800); MLP of layers 0-4 reused for 2 steps after the
steps at timesteps 720, 640, 560, 480, 400 of the 50-step DDIM loop (steps 13, 17, 21, 25, 29)."""

OPENSORA_PAB = _pyramid(
    2, 4, 6, (450, 930), MLPReuse((0, 1, 2, 3, 4), at=_loop_positions((13, 17, 21), 30), unit="fraction")
)
"""Open-Sora 1.2: spatial 2 / temporal 4 / cross 6 on (450, 930); MLP of layers 0-4 reused for 2 steps after
the steps the original names by their bf16 timesteps 864, 788, 676: steps 13, 17, 21 of the 30-step
rectified-flow loop at 480p, 51 frames."""

OPENSORA_PLAN_V11_PAB = _pyramid(
    2,
    4,
    6,
    (100, 850),
    MLPReuse(tuple(range(7)), at=_loop_positions(tuple(range(35, 88, 4)), 159), unit="fraction"),
)
"""Open-Sora-Plan v1.1: spatial 2 / temporal 4 / cross 6 on (100, 850); MLP of layers 0-6 reused for 2 steps
after each of the 14 steps the original names by their timesteps 738, 714, ..., 426 (every 24): steps 35, 39,
..., 87 of the 159-iteration loop diffusers' default ``PNDMScheduler`` runs for the release's 150 steps."""

OPENSORA_PLAN_V12_PAB = PABConfig(full=Broadcast(2, window=(100, 850)), cross=Broadcast(6, window=(100, 850)))
"""Open-Sora-Plan v1.2 (full 3-D attention, no spatial or temporal kind): full 2 / cross 6 on (100, 850), no
MLP reuse."""

EMBEDDED_PAB = PABConfig(
    spatial=Broadcast(2, window=(100, 800)),
    temporal=Broadcast(3, window=(100, 800)),
    cross=Broadcast(4, window=(100, 800)),
)
"""videosys-tiny (20 trailing DDIM steps): spatial 2 / temporal 3 / cross 4 on (100, 800), no MLP reuse;
measured in ``benchmarks/embedded_model.py`` (speed and PSNR against the clip without PAB)."""

WAN_PAB = PABConfig(full=Broadcast(2, window=(100, 850)), cross=Broadcast(6, window=(100, 850)))
"""Wan 2.1 (full 3-D attention): VideoSys's CogVideoX rule, the fastest-changing attention every 2 steps and
cross-attention every 6, inside timesteps (100, 850); no MLP reuse. Measured on a Wan-proportioned proxy in
``benchmarks/wan_pab.py``."""

COGVIDEOX_PAB = PABConfig(full=Broadcast(2, window=(100, 850)))
"""CogVideoX 2b / 5b (VideoSys's CogVideoX config): the joint text-video attention, which is VideoSys's "spatial"
kind there and a ``full`` attention here, every 2 steps on (100, 850); CogVideoX has no temporal or cross
attention, and no MLP reuse."""
