"""Every estimator proves itself against the closed-form linear-Gaussian model.

Tolerances are multiples of the estimators' own Monte Carlo standard errors (z = 4 keeps a seeded
test far from flaky while still failing on any bias larger than a few standard errors) plus, where an
optimizer is involved, a stated optimization tolerance.
"""
import math

import torch

from pyro_vaegap.guides.ffg import LocalFFG
from pyro_vaegap.ais import ais, bdmc
from pyro_vaegap.estimators import importance_sample, iwae_bounds
from pyro_vaegap.local import optimize_local
from pyro_vaegap.traces import log_weights

Z = 4.0


def fitted_ffg(model, x, steps=4000):
    """Per-datum FFG optimized at lr 1e-2 (paper: 1e-3; the larger rate only shortens the test)."""
    g = LocalFFG(model, x.shape[0]).double()
    res = optimize_local(model, g, x, num_samples=100, lr=1e-2, max_steps=steps, check_every=100, patience=5)
    return g, res


def test_ffg_optimum_matches_analytic(lg_model, lg_data):
    """The per-datum FFG optimum has the posterior mean and variances 1/Λ_ii, and its gap is
    0.5 (Σ log Λ_ii − log det Λ)."""
    g, res = fitted_ffg(lg_model, lg_data)
    post = lg_model.exact_posterior(lg_data)
    prec = lg_model.posterior_precision()
    # stochastic Adam at lr 1e-2 jitters the parameters by O(lr); 0.03 is a few times that
    assert torch.allclose(g.loc.detach(), post.mean, atol=0.03)
    assert torch.allclose(g.scale.detach(), prec.diagonal().rsqrt().expand_as(g.scale), atol=0.03)
    r = importance_sample(lg_model, g, lg_data, 20000, psis=False)
    gap = lg_model.exact_log_marginal(lg_data) - r.elbo
    exact_gap = float(lg_model.exact_ffg_gap())
    assert exact_gap > 0.1
    # the ELBO is quadratic around the optimum, so an O(0.03) parameter error costs < 0.01 nats
    assert torch.all((gap - exact_gap).abs() < Z * r.elbo_se + 0.01), (gap, exact_gap)


def test_iwae_and_ais_match_exact_log_marginal(lg_model, lg_data):
    g, _ = fitted_ffg(lg_model, lg_data, steps=1500)
    exact = lg_model.exact_log_marginal(lg_data)
    r = importance_sample(lg_model, g, lg_data, 5000)
    assert torch.all((r.iwae - exact).abs() < Z * r.iwae_se + 1e-3), (r.iwae - exact, r.iwae_se)
    a = ais(lg_model, lg_data, num_chains=100, num_steps=500, leapfrog_steps=5, init_step_size=0.1)
    # delta-method standard error of log-mean-exp over K chains
    se = ((100 / a.ess - 1).clamp(min=0) / 99).sqrt()
    assert torch.all((a.log_px - exact).abs() < Z * se + 1e-3), (a.log_px - exact, se)
    assert torch.all(a.accept_rate > 0.5)


def test_bound_ordering_and_iwae_monotone_in_k(lg_model, lg_data):
    """ELBO ≤ IWAE_k ≤ log p(x), IWAE_k increasing in k, with a deliberately poor guide (the prior)."""
    g = LocalFFG(lg_model, lg_data.shape[0]).double()  # q = N(0, I): far from the posterior
    with torch.no_grad():
        lw = log_weights(lg_model, g, lg_data, 200_000)
    exact = lg_model.exact_log_marginal(lg_data)
    ks = [1, 10, 100, 1000]
    b = iwae_bounds(lw, ks)
    for k_small, k_big in zip(ks[:-1], ks[1:]):
        diff = b[k_big][0] - b[k_small][0]
        se = (b[k_big][1] ** 2 + b[k_small][1] ** 2).sqrt()
        assert torch.all(diff > -Z * se), (k_small, k_big, diff, se)
        assert diff.mean() > 0
    assert torch.all(b[1000][0] < exact + Z * b[1000][1])
    assert torch.all(b[1][0] < b[1000][0])
    assert torch.allclose(b[1][0], lw.mean(0))  # L_1 is the ELBO


def test_bdmc_sandwiches_exact(lg_model):
    torch.manual_seed(3)
    res = bdmc(lg_model, 6, torch.zeros(1, 5, dtype=torch.float64), num_chains=50, num_steps=300,
               leapfrog_steps=5, init_step_size=0.1)
    exact = lg_model.exact_log_marginal(res.x)
    se_lo = ((50 / res.lower.ess - 1).clamp(min=0) / 49).sqrt()
    se_hi = ((50 / res.upper.ess - 1).clamp(min=0) / 49).sqrt()
    assert torch.all(res.upper.log_px > exact - Z * se_hi)
    assert torch.all(res.lower.log_px < exact + Z * se_lo)
    assert torch.all(res.gap > -Z * (se_lo + se_hi))
    assert res.gap.mean() < 0.1  # 300 steps sandwich log p(x) to within 0.1 nats on this model


def test_ais_schedule_and_rejection_of_non_finite():
    from pyro_vaegap.ais import beta_schedule

    for kind in ("linear", "sigmoid"):
        b = beta_schedule(50, kind)
        assert b[0] == 0 and b[-1] == 1 and torch.all(b.diff() > 0)
    # a likelihood that is -inf on half of the latent space: proposals landing there are rejected
    import pyro
    import pyro.distributions as dist

    class HalfSpace(torch.nn.Module):
        latent_dim, data_dim = 1, 1

        def forward(self, x, idx=None, num_data=None):
            with pyro.plate("data", x.shape[0], dim=-1):
                z = pyro.sample("z", dist.Normal(torch.zeros(1), 1.0).to_event(1))
                ll = torch.where(z[..., 0] > 0, torch.zeros_like(z[..., 0]), torch.full_like(z[..., 0], -math.inf))
                pyro.factor("x", ll)

    x = torch.zeros(4, 1)
    a = ais(HalfSpace(), x, num_chains=20, num_steps=50, leapfrog_steps=3, init_step_size=0.5)
    # exact: p(z > 0) = 1/2; chains starting in the forbidden half get weight 0 (log -inf) which is
    # correct AIS behaviour, but the estimate itself must be finite and no state may become NaN
    assert torch.isfinite(a.log_px).all()
    assert (a.log_px - math.log(0.5)).abs().max() < 0.5
