"""R. Yu's tutorial, §§3.3, 4.3, 5.2: the identities checked numerically on the Pyro models and guides.

Tolerances: Monte Carlo estimates are compared within 4 standard errors (seeded; a false failure has
probability < 1e-4 per comparison); closed-form identities in float64 within a few hundred ulps of the
values compared.
"""
import math

import pyro.distributions as dist
import pytest
import torch

from pyro_vaegap.gaps import GapConfig, gap_report
from pyro_vaegap.guide import check_guide
from pyro_vaegap.models import GaussianVAE
from pyro_vaegap.registry import get_family
from pyro_vaegap.tutorial.channel import channel_terms
from pyro_vaegap.tutorial.fit import fit
from pyro_vaegap.tutorial.kl import analytic_kl
from pyro_vaegap.tutorial.latent import (gaussian_data, gaussian_entropy, ignore_z, near_deterministic,
                                         near_deterministic_gaps)
from pyro_vaegap.tutorial.sigma_vae import (SigmaVAE, SigmaVAEGuide, affine_flow, affine_gap, base_distribution,
                                            fit_order, flow_limit_gaps, flow_log_prob, jacobian, real_nvp)
from pyro_vaegap.utils import ConfigError

F64 = torch.float64


def flow_samples(f, n, seed=0):
    torch.manual_seed(seed)
    with torch.no_grad():
        return dist.TransformedDistribution(base_distribution(2, torch.zeros(2, dtype=F64)), [f]).sample((n,))


# ---------------------------------------------------------------- §3.3: the Σ-VAE tends to the flow
def test_sigma_vae_guide_is_the_tutorials_encoder():
    """q(z|x) has mean f⁻¹(x) and covariance ε² J⁻¹J⁻ᵀ, with J from autodiff equal to the affine map's matrix;
    the guide passes the library's guide contract with its model."""
    f = affine_flow(2, seed=1)
    x = flow_samples(f, 5)
    model = SigmaVAE(f, 2, eps=0.1)
    guide = SigmaVAEGuide(model)
    loc, scale_tril = guide.encode(x)
    L = f.scale_tril
    torch.testing.assert_close(jacobian(f, loc), L.expand(5, 2, 2), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(loc, torch.linalg.solve(L, (x - f.loc).T).T, rtol=1e-10, atol=1e-12)
    L_inv = torch.linalg.inv(L)
    torch.testing.assert_close(scale_tril @ scale_tril.transpose(-1, -2), (0.01 * L_inv @ L_inv.T).expand(5, 2, 2),
                               rtol=1e-10, atol=1e-14)
    check_guide(model, guide, x)


def test_sigma_vae_affine_gap_is_half_eps2_trace_at_order_2():
    """Affine f: −ELBO − NLL_flow = ½ε² tr(J⁻¹J⁻ᵀ) exactly (r = 0 in eq. 30). The ELBO from the traced model and
    guide matches it within 4 Monte Carlo s.e. at every ε, and the fitted log-log slope is 2 within 4 s.e."""
    f = affine_flow(2, seed=0)
    x = flow_samples(f, 60)
    torch.manual_seed(0)
    eps = [0.2, 0.05, 0.0125]
    r = flow_limit_gaps(f, x, eps, num_samples=400)
    for e, g, se in zip(r["eps"], r["gap"], r["gap_se"]):
        assert abs(g - affine_gap(f, e)) < 4 * se, (e, g, se, affine_gap(f, e))
    p, p_se, _ = fit_order(r["eps"], r["gap"], r["gap_se"])
    assert abs(p - 2) < 4 * p_se and p_se < 0.05, (p, p_se)


def test_sigma_vae_real_nvp_gap_vanishes_at_order_2():
    """A seeded Real NVP (a smooth nonlinear f, Pyro's default initialization): the mean gap is positive and
    falls as ε² — the fitted slope on ε ∈ [0.025, 0.1] is 2 within 4 s.e. (s.e. about 0.06) — and its
    coefficient is within 10 % of ½ E tr(J⁻¹J⁻ᵀ), the leading term of eq. 30 (the rest, from the map's
    curvature, is small for this nearly affine map). The datapoints are f(0.1 z), near the mode: the
    ELBO's Monte Carlo noise comes mostly from log p(z)'s first-order term −ε f⁻¹(x)ᵀJ⁻¹u, small there."""
    f = real_nvp(2, couplings=2, hidden=8, seed=0)
    torch.manual_seed(1)
    with torch.no_grad():
        x = f(0.1 * torch.randn(60, 2, dtype=F64))
        J_inv = torch.linalg.inv(jacobian(f, f.inv(x)))
    half_trace = 0.5 * float(J_inv.pow(2).sum((-1, -2)).mean())
    torch.manual_seed(0)
    r = flow_limit_gaps(f, x, [0.1, 0.05, 0.025], num_samples=400)
    assert all(g > 4 * se for g, se in zip(r["gap"], r["gap_se"]))
    p, p_se, c = fit_order(r["eps"], r["gap"], r["gap_se"])
    assert abs(p - 2) < 4 * p_se and p_se < 0.15, (p, p_se)
    assert c == pytest.approx(half_trace, rel=0.1)
    with torch.no_grad():
        nll = float(-flow_log_prob(f, x).mean())
    assert nll == pytest.approx(r["nll_flow"], rel=1e-12)


def test_sigma_vae_bad_eps():
    with pytest.raises(ConfigError, match="eps=0.0 is not allowed"):
        SigmaVAE(affine_flow(2), 2, eps=0.0)


# ---------------------------------------------------------------- §4.3: the noisy Gaussian channel
def _trained_channel_vae(power_constraint: bool, steps: int = 150):
    torch.manual_seed(0)
    x = gaussian_data([0.0, 0.0, 0.0, 0.0], 0.5, 400, seed=0).float()
    x = torch.cat([x[:, :2], torch.tanh(3 * x[:, :2])], 1)  # a non-Gaussian 4-d set
    model = GaussianVAE(4, latent_dim=3, hidden=16, decoder_layers=1, variance="diagonal")
    guide = get_family("isotropic").make_amortized(model, hidden=16, layers=1, power_constraint=power_constraint)
    losses = fit(model, guide, x, steps=steps, batch_size=100, lr=3e-3, seed=0)
    assert losses[-1] < losses[0]
    return model.double(), guide.double(), x.double()


def test_channel_identity_holds_to_float_precision_under_the_power_constraint():
    """Eq. 38 on a trained VAE whose encoder satisfies P(x) + N(x) = 1: the KL from the traces equals
    −d/2 log N(x) for every datapoint to float64 precision."""
    model, guide, x = _trained_channel_vae(True)
    t = channel_terms(model, guide, x)
    assert t["d"] == 3
    torch.testing.assert_close(t["power"] + t["noise"], torch.ones_like(t["noise"]), rtol=0, atol=1e-14)
    # the encoder transmits something (about 0.01 nats after 150 steps), 1e10 times the tolerance: not 0 = 0
    assert float(t["capacity"].mean()) > 1e-3
    torch.testing.assert_close(t["kl"], t["capacity"], rtol=1e-12, atol=1e-13)


def test_channel_identity_needs_the_power_constraint():
    """Without the constraint the identity fails per datapoint by exactly d/2 (P + N − 1) (float64), which is
    far from 0 for a freely trained isotropic encoder."""
    model, guide, x = _trained_channel_vae(False)
    t = channel_terms(model, guide, x)
    torch.testing.assert_close(t["kl"] - t["capacity"], t["excess"], rtol=1e-12, atol=1e-12)
    assert float((t["power"] + t["noise"] - 1).abs().max()) > 1e-2
    torch.testing.assert_close(t["kl"], analytic_kl(model, guide, x), rtol=0, atol=0)


def test_channel_terms_refuse_a_non_isotropic_encoder():
    model = GaussianVAE(4, latent_dim=3, hidden=8, decoder_layers=1)
    guide = get_family("ffg").make_amortized(model, hidden=8, layers=1)
    with torch.no_grad():
        guide.head.bias[3:] = torch.tensor([0.0, 1.0, 2.0])
    with pytest.raises(ConfigError, match="isotropic encoder"):
        channel_terms(model, guide, torch.rand(5, 4))


def test_isotropic_family_passes_the_guide_contract():
    model = GaussianVAE(4, latent_dim=3, hidden=8, decoder_layers=1)
    fam = get_family("isotropic")
    x = torch.rand(6, 4)
    for pc in (False, True):
        check_guide(model, fam.make_amortized(model, hidden=8, layers=1, power_constraint=pc), x)
    local = fam.make_local(model, 6)
    check_guide(model, local, x)
    local.init_from_amortized(fam.make_amortized(model, hidden=8, layers=1), x)
    assert local.scale.shape == (6,)


# ---------------------------------------------------------------- §5.2: the latent vector is not a parameter
def _gaps(model, guide, x, samples=300, steps=400):
    torch.manual_seed(0)
    cfg = GapConfig(families=("ffg",), ais=False, iwae_samples=samples, elbo_samples=samples, local_init="encoder",
                    local_samples=20, local_lr=3e-3, local_max_steps=steps, local_check_every=100, seed=0)
    return gap_report(model, guide, x, cfg, family="ffg", progress=False, log=None)


def test_z_ignored_is_exact_with_zero_gaps():
    """q = p(z) and the decoder ignores z: log p(x) is the data's density exactly, the IWAE of the gap report
    equals it and L[q] = log p(x) (every weight is p(x)): the inference gap, hence both gaps, are 0 to float64
    precision. The per-datum FFG optimization started at q (the posterior) stays there: its approximation gap is
    0 within 4 s.e. (its Monte Carlo gradient's score term moves q* off the posterior a little)."""
    mu, sigma = [0.5, -1.0], 0.7
    x = gaussian_data(mu, sigma, 20, seed=1)
    model, guide = ignore_z(mu, sigma)
    exact = model.exact_log_marginal(x)
    truth = dist.Normal(torch.tensor(mu, dtype=F64), sigma).to_event(1).log_prob(x)
    torch.testing.assert_close(exact, truth, rtol=1e-13, atol=1e-13)
    rep = _gaps(model, guide, x, samples=50, steps=200)
    p = rep.per_point
    torch.testing.assert_close(torch.as_tensor(p["log_px"]), exact, rtol=1e-12, atol=1e-12)
    assert abs(p["inference"]).max() < 1e-10 and abs(p["amortized_se"]).max() < 1e-10
    approx, se = rep.summary()["approximation:ffg"]
    assert abs(approx) < 4 * se, (approx, se)
    assert float(analytic_kl(model, guide, x).abs().max()) < 1e-15


@pytest.mark.slow  # two gap reports with 400-step local optimizations: 15-150 s depending on the machine's load
def test_near_deterministic_reaches_the_likelihood_with_vanishing_gaps():
    """ε → 0: the exact NLL approaches the data's own by KL(p_gt ‖ p) = n/2[log(1+ε²) − ε²/(1+ε²)] = O(ε⁴) (the
    LinearGaussian marginal checked per point against N(μ, σ²(1+ε²) I)), the rate grows like −n log ε, and the
    gap report's inference gap log p̂ − L[q] (no optimizer involved) equals the closed form KL(q ‖ p(z|x)) =
    O(ε²) within 4 s.e.: all of it is amortization gap, since the exact posterior is an FFG. The per-datum FFG
    optimization (400 Adam steps of 20 samples, lr 3e-3) leaves an approximation gap below 0.01 nats, its
    noise floor measured here (about 0.006)."""
    mu, sigma = [0.5, -1.0], 0.7
    x = gaussian_data(mu, sigma, 30, seed=2)
    truth = dist.Normal(torch.tensor(mu, dtype=F64), sigma).to_event(1).log_prob(x)
    u_sq = ((x - torch.tensor(mu, dtype=F64)) / sigma).pow(2).sum(-1)
    amort = {}
    for eps in (0.3, 0.1):
        model, guide = near_deterministic(mu, sigma, eps)
        exact = model.exact_log_marginal(x)
        e2 = eps ** 2
        closed = truth - math.log1p(e2) + u_sq / 2 * e2 / (1 + e2)  # log N(x; mu, sigma²(1+ε²) I), n = 2
        torch.testing.assert_close(exact, closed, rtol=1e-12, atol=1e-12)
        p_gt = dist.Normal(torch.tensor(mu, dtype=F64), sigma).to_event(1)
        p_model = dist.Normal(torch.tensor(mu, dtype=F64), sigma * math.sqrt(1 + e2)).to_event(1)
        assert near_deterministic_gaps(2, eps, u_sq)["nll_excess"] == pytest.approx(
            float(torch.distributions.kl_divergence(p_gt, p_model)), rel=1e-10)
        rate = 0.5 * (2 * (e2 - 1) + u_sq) - 2 * math.log(eps)  # KL(N(u, ε²I) ‖ N(0, I)), n = 2: unbounded as ε → 0
        torch.testing.assert_close(analytic_kl(model, guide, x), rate, rtol=1e-12, atol=1e-12)
        rep = _gaps(model, guide, x)
        p = {k: torch.as_tensor(v) for k, v in rep.per_point.items()}
        pred = near_deterministic_gaps(2, eps, u_sq)["amortization"]
        torch.testing.assert_close(p["log_px"], exact, rtol=0, atol=float(4 * p["iwae_se"].max()) + 1e-12)
        diff = p["inference"] - pred
        diff_se = float((p["amortized_se"] ** 2 + p["iwae_se"] ** 2).sum().sqrt()) / len(diff)
        assert abs(float(diff.mean())) < 4 * diff_se, (eps, float(diff.mean()), diff_se)
        assert -0.01 < float(p["approximation:ffg"].mean()) < 0.01
        assert float(p["amortization:ffg"].mean()) > 0
        amort[eps] = float(pred.mean())
    assert amort[0.1] < amort[0.3] / 5   # O(ε²): 9× smaller for 3× smaller ε


def test_gaussian_entropy_and_bad_inputs():
    assert gaussian_entropy(2, 1.0) == pytest.approx(math.log(2 * math.pi * math.e))
    with pytest.raises(ConfigError, match="sigma_gt=-1.0 is not allowed"):
        ignore_z([0.0], -1.0)
    with pytest.raises(ConfigError, match="eps=0.0 is not allowed"):
        near_deterministic([0.0], 1.0, 0.0)
