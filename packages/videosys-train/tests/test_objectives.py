"""Objectives against closed forms written out here, independently of the code under test."""

import math

import numpy as np
import pytest
import torch

from videosys.train.objectives import (
    DDPMObjective,
    GaussianDiffusion,
    RectifiedFlowObjective,
    discretized_gaussian_log_likelihood,
    normal_kl,
    per_sample_draws,
)


def _betas(n=1000):
    return np.linspace(1e-4, 0.02, n, dtype=np.float64)


def test_linear_schedule_matches_ddpm():
    d = GaussianDiffusion.linear(1000)
    np.testing.assert_allclose(d.betas.numpy(), _betas(), rtol=1e-12)
    np.testing.assert_allclose(d.alphas_cumprod.numpy(), np.cumprod(1 - _betas()), rtol=1e-12)


@pytest.mark.parametrize("t", [1, 17, 500, 999])
def test_posterior_equals_gaussian_conditioning(t):
    # Joint Gaussian of (x_{t-1}, x_t) given x0: x_{t-1} ~ N(a x0, va), x_t = sqrt(alpha_t) x_{t-1} + N(0, beta_t).
    betas = _betas()
    abar = np.cumprod(1 - betas)
    x0, xt = 0.3, -1.1
    a, va = math.sqrt(abar[t - 1]), 1 - abar[t - 1]
    s = math.sqrt(1 - betas[t])
    cov_prev_t, var_t = s * va, s * s * va + betas[t]
    mean = a * x0 + cov_prev_t / var_t * (xt - s * a * x0)
    var = va - cov_prev_t**2 / var_t
    d = GaussianDiffusion.linear(1000)
    got_mean, got_logvar = d.q_posterior(
        torch.tensor([[x0]], dtype=torch.float64), torch.tensor([[xt]], dtype=torch.float64), torch.tensor([t])
    )
    assert got_mean.item() == pytest.approx(mean, rel=1e-9)
    assert math.exp(got_logvar.item()) == pytest.approx(var, rel=1e-9)


def test_normal_kl_and_decoder_likelihood_against_torch_distributions():
    g = torch.Generator().manual_seed(0)
    m1, m2, lv1, lv2 = (torch.randn(100, generator=g, dtype=torch.float64) for _ in range(4))
    ref = torch.distributions.kl_divergence(
        torch.distributions.Normal(m1, (0.5 * lv1).exp()), torch.distributions.Normal(m2, (0.5 * lv2).exp())
    )
    torch.testing.assert_close(normal_kl(m1, lv1, m2, lv2), ref)
    x = torch.tensor([-1.0, -0.5, 0.0, 0.25, 1.0], dtype=torch.float64)
    mean, log_scale = torch.full_like(x, 0.1), torch.full_like(x, math.log(0.5))  # where the tanh CDF is accurate
    normal = torch.distributions.Normal(mean, log_scale.exp())
    exact = torch.where(
        x < -0.999,
        normal.cdf(x + 1 / 255),
        torch.where(x > 0.999, 1 - normal.cdf(x - 1 / 255), normal.cdf(x + 1 / 255) - normal.cdf(x - 1 / 255)),
    ).log()
    torch.testing.assert_close(discretized_gaussian_log_likelihood(x, mean, log_scale), exact, rtol=2e-3, atol=2e-3)


def test_per_sample_draws_do_not_depend_on_the_batch():
    u, n = per_sample_draws(torch.tensor([5, 9]), (2, 3))
    u9, n9 = per_sample_draws(torch.tensor([9]), (2, 3))
    assert u[1] == u9[0] and torch.equal(n[1], n9[0])
    assert not torch.equal(n[0], n[1])


def _oracle(objective_target):
    """A model that outputs whatever ``objective_target(xt, t)`` returns."""
    return objective_target


def test_ddpm_epsilon_oracle_gives_zero_mse_and_closed_form_vb():
    x0 = torch.rand(3, 2, 2, 4, 4, dtype=torch.float64) * 2 - 1
    seeds = torch.tensor([1, 2, 3])
    objective = DDPMObjective(prediction="epsilon", learn_sigma=True)
    _, noise = per_sample_draws(seeds, tuple(x0.shape[1:]))
    # frac output +1 selects log(beta_t) as the variance; with the true mean the KL is the variance term alone.
    terms = objective(lambda xt, t: torch.cat([noise.double(), torch.ones_like(xt)], 1), x0.double(), seeds)
    assert torch.allclose(terms.mse, torch.zeros(3, dtype=torch.float64), atol=1e-20)
    uniforms, _ = per_sample_draws(seeds, (1,))
    betas = _betas()
    abar = np.cumprod(1 - betas)
    for i, u in enumerate(uniforms.tolist()):
        t = int(u * 1000)
        assert t > 0  # these seeds avoid the decoder term
        post_var = betas[t] * (1 - abar[t - 1]) / (1 - abar[t])
        kl = 0.5 * (-1 + math.log(betas[t]) - math.log(post_var) + post_var / betas[t]) / math.log(2)
        assert terms.vb[i].item() == pytest.approx(kl, rel=1e-6)
        assert terms.loss[i].item() == pytest.approx(kl, rel=1e-6)


def test_ddpm_v_prediction_target_and_gradients():
    x0 = torch.randn(2, 2, 1, 2, 2, dtype=torch.float64)
    seeds = torch.tensor([11, 12])
    objective = DDPMObjective(prediction="v", learn_sigma=True)
    _, noise = per_sample_draws(seeds, tuple(x0.shape[1:]))
    seen = {}

    def model(xt, t):
        abar = torch.tensor(np.cumprod(1 - _betas()))[t.long()].reshape(-1, 1, 1, 1, 1)
        v = abar.sqrt() * noise.double() - (1 - abar).sqrt() * x0  # Salimans & Ho, written out
        seen["x0_back"] = abar.sqrt() * xt - (1 - abar).sqrt() * v
        return torch.cat([v, torch.zeros_like(v)], 1)

    terms = objective(model, x0, seeds)
    torch.testing.assert_close(seen["x0_back"], x0)  # the v identity recovers x0 from (x_t, v)
    assert terms.mse.abs().max() < 1e-20
    # The variance output gets gradients from the VLB; the mean output only from the MSE.
    out = torch.zeros(2, 4, 1, 2, 2, dtype=torch.float64, requires_grad=True)
    objective(lambda xt, t: out, x0, seeds).vb.sum().backward()
    assert out.grad[:, :2].abs().max() == 0 and out.grad[:, 2:].abs().max() > 0


def test_ddpm_rejects_a_model_without_sigma_channels():
    with pytest.raises(ValueError, match="needs 4"):
        DDPMObjective()(lambda xt, t: xt, torch.zeros(1, 2, 1, 2, 2), torch.tensor([0]))


def test_rectified_flow_interpolation_target_and_timesteps():
    x0 = torch.randn(2, 3, 2, 4, 4)
    seeds = torch.tensor([4, 8])
    _, noise = per_sample_draws(seeds, tuple(x0.shape[1:]))
    seen = {}

    def model(xt, t):
        s = (t / 1000).reshape(-1, 1, 1, 1, 1)
        seen["xt_ok"] = torch.allclose(xt, (1 - s) * x0 + s * noise, atol=1e-6)
        return x0 - noise

    terms = RectifiedFlowObjective(sample_method="uniform")(model, x0, seeds)
    assert seen["xt_ok"] and terms.loss.abs().max() < 1e-10
    flow = RectifiedFlowObjective(sample_method="logit-normal", shift=3.0)
    phi1 = 0.5 * (1 + math.erf(1 / math.sqrt(2)))
    s = 1 / (1 + math.exp(-1))
    expected = 3 * s / (1 + 2 * s)
    assert flow.sample_fraction(torch.tensor([phi1], dtype=torch.float64)).item() == pytest.approx(expected, rel=1e-6)
    assert RectifiedFlowObjective(sample_method="uniform", shift=3.0).sample_fraction(
        torch.tensor([0.5])
    ).item() == pytest.approx(0.75)
