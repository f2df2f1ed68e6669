"""Diffusion training losses: DDPM (epsilon or v prediction, learned sigma) and rectified flow.

Every objective draws each sample's timestep and noise from a generator seeded by that sample's own
seed, so a sample gets the same noise whatever batch, rank or resumed run it lands in: that is what
makes data-parallel runs match the single-process run and resumed runs match straight ones.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch

__all__ = [
    "DDPMObjective",
    "GaussianDiffusion",
    "Objective",
    "RectifiedFlowObjective",
    "discretized_gaussian_log_likelihood",
    "normal_kl",
    "per_sample_draws",
]

ModelFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""``model_fn(x_t, t) -> output``: the model with its other inputs (text, labels) bound."""


def per_sample_draws(seeds: torch.Tensor, shape: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """One uniform ``u in [0, 1)`` and one standard-normal tensor of ``shape`` per sample seed."""
    uniforms, noises = [], []
    for seed in seeds.tolist():
        generator = torch.Generator().manual_seed(int(seed))
        uniforms.append(torch.rand((), generator=generator, dtype=torch.float64))
        noises.append(torch.randn(shape, generator=generator))
    return torch.stack(uniforms), torch.stack(noises)


def at_least_fp32(x: torch.Tensor) -> torch.Tensor:
    """Losses are computed in float32 even for bf16/fp16 model outputs (float64 stays float64)."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


def mean_flat(x: torch.Tensor) -> torch.Tensor:
    """Mean over every dim but the batch."""
    return x.mean(dim=tuple(range(1, x.dim())))


def normal_kl(mean1: torch.Tensor, logvar1: torch.Tensor, mean2: torch.Tensor, logvar2: torch.Tensor) -> torch.Tensor:
    """KL(N(mean1, exp(logvar1)) || N(mean2, exp(logvar2))) element-wise, in nats."""
    return 0.5 * (-1.0 + logvar2 - logvar1 + torch.exp(logvar1 - logvar2) + (mean1 - mean2) ** 2 * torch.exp(-logvar2))


def _approx_standard_normal_cdf(x: torch.Tensor) -> torch.Tensor:
    # The tanh approximation improved-DDPM, DiT and Latte use for the decoder likelihood.
    return 0.5 * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x.pow(3))))


def discretized_gaussian_log_likelihood(x: torch.Tensor, means: torch.Tensor, log_scales: torch.Tensor) -> torch.Tensor:
    """log-likelihood of data ``x`` in [-1, 1] quantised to 256 bins under N(means, exp(log_scales)^2)."""
    centered = x - means
    inv_stdv = torch.exp(-log_scales)
    cdf_plus = _approx_standard_normal_cdf(inv_stdv * (centered + 1.0 / 255.0))
    cdf_min = _approx_standard_normal_cdf(inv_stdv * (centered - 1.0 / 255.0))
    log_cdf_plus = torch.log(cdf_plus.clamp(min=1e-12))
    log_one_minus_cdf_min = torch.log((1.0 - cdf_min).clamp(min=1e-12))
    log_cdf_delta = torch.log((cdf_plus - cdf_min).clamp(min=1e-12))
    return torch.where(x < -0.999, log_cdf_plus, torch.where(x > 0.999, log_one_minus_cdf_min, log_cdf_delta))


class GaussianDiffusion:
    """The DDPM forward process ``q(x_t | x_0)`` for a beta schedule, and its posterior, in float64."""

    def __init__(self, betas: torch.Tensor) -> None:
        betas = betas.to(torch.float64)
        if betas.dim() != 1 or not bool(((betas > 0) & (betas <= 1)).all()):
            raise ValueError("betas must be a 1-D tensor with values in (0, 1]")
        self.num_timesteps = len(betas)
        self.betas = betas
        alphas = 1.0 - betas
        self.alphas_cumprod = torch.cumprod(alphas, dim=0)
        self.alphas_cumprod_prev = torch.cat([torch.ones(1, dtype=torch.float64), self.alphas_cumprod[:-1]])
        self.posterior_variance = betas * (1.0 - self.alphas_cumprod_prev) / (1.0 - self.alphas_cumprod)
        # The variance at t=0 is 0; improved-DDPM clips its log with the t=1 value.
        self.posterior_log_variance_clipped = torch.log(
            torch.cat([self.posterior_variance[1:2], self.posterior_variance[1:]])
        )
        self.posterior_mean_coef1 = betas * torch.sqrt(self.alphas_cumprod_prev) / (1.0 - self.alphas_cumprod)
        self.posterior_mean_coef2 = (1.0 - self.alphas_cumprod_prev) * torch.sqrt(alphas) / (1.0 - self.alphas_cumprod)

    @classmethod
    def linear(cls, num_timesteps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02) -> GaussianDiffusion:
        """The linear schedule of DDPM, DiT and Latte (scaled so 1000 steps gives 1e-4..0.02)."""
        scale = 1000 / num_timesteps
        return cls(torch.linspace(scale * beta_start, scale * beta_end, num_timesteps, dtype=torch.float64))

    def _at(self, values: torch.Tensor, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return values[t].to(like.dtype).reshape(-1, *([1] * (like.dim() - 1)))

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """``x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) noise``."""
        abar = self._at(self.alphas_cumprod, t, x0)
        return abar.sqrt() * x0 + (1 - abar).sqrt() * noise

    def q_posterior(self, x0: torch.Tensor, xt: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and clipped log-variance of ``q(x_{t-1} | x_t, x_0)``."""
        mean = self._at(self.posterior_mean_coef1, t, x0) * x0 + self._at(self.posterior_mean_coef2, t, x0) * xt
        return mean, self._at(self.posterior_log_variance_clipped, t, x0).expand_as(x0)

    def v_target(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """``v = sqrt(abar) noise - sqrt(1 - abar) x_0`` (Salimans & Ho)."""
        abar = self._at(self.alphas_cumprod, t, x0)
        return abar.sqrt() * noise - (1 - abar).sqrt() * x0

    def eps_from_v(self, xt: torch.Tensor, t: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        abar = self._at(self.alphas_cumprod, t, xt)
        return abar.sqrt() * v + (1 - abar).sqrt() * xt

    def x0_from_eps(self, xt: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        abar = self._at(self.alphas_cumprod, t, xt)
        return (xt - (1 - abar).sqrt() * eps) / abar.sqrt()

    def learned_log_variance(self, t: torch.Tensor, frac_output: torch.Tensor) -> torch.Tensor:
        """improved-DDPM's learned range: interpolate between the posterior and beta log-variances."""
        min_log = self._at(self.posterior_log_variance_clipped, t, frac_output)
        max_log = self._at(torch.log(self.betas), t, frac_output)
        frac = (frac_output + 1) / 2
        return frac * max_log + (1 - frac) * min_log


@dataclass
class LossTerms:
    """Per-sample loss ``(B,)`` and its parts, for logging."""

    loss: torch.Tensor
    mse: torch.Tensor
    vb: torch.Tensor | None = None


class Objective:
    """A training loss: ``__call__(model_fn, x0, seeds) -> LossTerms`` with per-sample seeded draws."""

    out_channels_factor: int = 1
    """How many times the input channels the model must output (2 with a learned sigma)."""

    def __call__(self, model_fn: ModelFn, x0: torch.Tensor, seeds: torch.Tensor) -> LossTerms:  # pragma: no cover
        raise NotImplementedError


class DDPMObjective(Objective):
    """DDPM loss of DiT, Latte and Open-Sora-Plan: MSE on epsilon or v, plus the VLB term for a learned sigma.

    With ``learn_sigma`` the model outputs ``2C`` channels: the prediction and the interpolation
    value of its log-variance. The VLB term trains only the variance (the mean is detached), as in
    improved-DDPM's hybrid loss: ``loss = mse + vb``, ``vb`` in bits per dim.
    """

    def __init__(
        self,
        diffusion: GaussianDiffusion | None = None,
        prediction: Literal["epsilon", "v"] = "epsilon",
        learn_sigma: bool = True,
    ) -> None:
        if prediction not in ("epsilon", "v"):
            raise ValueError(f"unknown DDPM prediction {prediction!r}; expected 'epsilon' or 'v'")
        self.diffusion = diffusion or GaussianDiffusion.linear()
        self.prediction = prediction
        self.learn_sigma = learn_sigma
        self.out_channels_factor = 2 if learn_sigma else 1

    def sample_timesteps(self, uniforms: torch.Tensor) -> torch.Tensor:
        """Integer timesteps uniform on ``0..num_timesteps-1``."""
        return (uniforms * self.diffusion.num_timesteps).long().clamp(max=self.diffusion.num_timesteps - 1)

    def vb_term(
        self, x0: torch.Tensor, xt: torch.Tensor, t: torch.Tensor, eps: torch.Tensor, frac: torch.Tensor
    ) -> torch.Tensor:
        """Per-sample VLB term ``L_t`` in bits/dim: KL to the true posterior, decoder NLL at ``t == 0``."""
        d = self.diffusion
        true_mean, true_logvar = d.q_posterior(x0, xt, t)
        pred_x0 = d.x0_from_eps(xt, t, eps)
        pred_mean, _ = d.q_posterior(pred_x0, xt, t)
        pred_logvar = d.learned_log_variance(t, frac)
        kl = mean_flat(normal_kl(true_mean, true_logvar, pred_mean, pred_logvar)) / math.log(2.0)
        nll = -mean_flat(discretized_gaussian_log_likelihood(x0, pred_mean, 0.5 * pred_logvar)) / math.log(2.0)
        return torch.where(t == 0, nll, kl)

    def __call__(self, model_fn: ModelFn, x0: torch.Tensor, seeds: torch.Tensor) -> LossTerms:
        uniforms, noise = per_sample_draws(seeds, tuple(x0.shape[1:]))
        t = self.sample_timesteps(uniforms).to(x0.device)
        noise = noise.to(device=x0.device, dtype=x0.dtype)
        xt = self.diffusion.q_sample(x0, t, noise)
        out = model_fn(xt, t.to(x0.dtype))
        channels = x0.shape[1]
        if out.shape[1] != channels * self.out_channels_factor:
            raise ValueError(
                f"the model output has {out.shape[1]} channels; DDPM with learn_sigma={self.learn_sigma} "
                f"needs {channels * self.out_channels_factor} for {channels} input channels"
            )
        pred = at_least_fp32(out[:, :channels])
        target = noise if self.prediction == "epsilon" else self.diffusion.v_target(x0, t, noise)
        mse = mean_flat((at_least_fp32(target) - pred) ** 2)
        if not self.learn_sigma:
            return LossTerms(mse, mse)
        x0, xt = at_least_fp32(x0), at_least_fp32(xt)
        eps = pred if self.prediction == "epsilon" else self.diffusion.eps_from_v(xt, t, pred)
        vb = self.vb_term(x0, xt, t, eps.detach(), at_least_fp32(out[:, channels:]))
        return LossTerms(mse + vb, mse, vb)


class RectifiedFlowObjective(Objective):
    """Open-Sora 1.2's rectified flow: ``x_t = (1 - s) x_0 + s noise``, ``s = t / 1000``, target ``x_0 - noise``.

    ``t`` is drawn uniformly or logit-normally (``sigmoid(N(0, 1))``), then optionally bent by the
    resolution-dependent timestep transform ``s' = r s / (1 + (r - 1) s)``. With a learned-sigma
    model (``2C`` output channels) only the first ``C`` are trained, as in Open-Sora.
    """

    def __init__(
        self,
        num_timesteps: int = 1000,
        sample_method: Literal["uniform", "logit-normal"] = "logit-normal",
        shift: float = 1.0,
        learn_sigma: bool = False,
    ) -> None:
        if sample_method not in ("uniform", "logit-normal"):
            raise ValueError(f"unknown timestep sampling {sample_method!r}; expected 'uniform' or 'logit-normal'")
        if shift <= 0:
            raise ValueError(f"the timestep shift must be positive, got {shift}")
        self.num_timesteps = num_timesteps
        self.sample_method = sample_method
        self.shift = shift
        self.out_channels_factor = 2 if learn_sigma else 1

    def sample_fraction(self, uniforms: torch.Tensor) -> torch.Tensor:
        """``s`` in (0, 1) from uniforms: identity, or the logit-normal quantile, then the shift transform."""
        s = uniforms
        if self.sample_method == "logit-normal":
            s = torch.sigmoid(torch.special.ndtri(uniforms.clamp(1e-6, 1 - 1e-6)))
        return self.shift * s / (1 + (self.shift - 1) * s)

    def __call__(self, model_fn: ModelFn, x0: torch.Tensor, seeds: torch.Tensor) -> LossTerms:
        uniforms, noise = per_sample_draws(seeds, tuple(x0.shape[1:]))
        s = self.sample_fraction(uniforms).to(device=x0.device, dtype=x0.dtype)
        noise = noise.to(device=x0.device, dtype=x0.dtype)
        view = s.reshape(-1, *([1] * (x0.dim() - 1)))
        xt = (1 - view) * x0 + view * noise
        out = model_fn(xt, s * self.num_timesteps)
        channels = x0.shape[1]
        if out.shape[1] != channels * self.out_channels_factor:
            raise ValueError(
                f"the model output has {out.shape[1]} channels; rectified flow needs "
                f"{channels * self.out_channels_factor} for {channels} input channels"
            )
        mse = mean_flat((at_least_fp32(x0 - noise) - at_least_fp32(out[:, :channels])) ** 2)
        return LossTerms(mse, mse)
