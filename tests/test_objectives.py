"""Free bits (FreeBitsELBO) against its closed form on the linear-Gaussian model."""
import pyro
import pytest
import torch
import pyro.distributions as dist
from torch.distributions import kl_divergence

from pyro_vaegap.guides.ffg import LocalFFG
from pyro_vaegap.guides.fullcov import LocalFullCov
from pyro_vaegap.objectives import LN2, FreeBitsELBO
from pyro_vaegap.traces import guide_model_traces, sum_log_prob
from pyro_vaegap.train import TrainConfig, train
from pyro_vaegap.utils import ConfigError

Z = 4.0  # tolerance in Monte Carlo standard errors


def ffg_guide(model, x):
    """A fixed FFG per datapoint, with scales spread so the per-dimension KLs differ widely."""
    g = LocalFFG(model, x.shape[0]).double()
    g.loc = torch.linspace(-1.0, 1.0, x.shape[0] * 2, dtype=x.dtype).reshape(-1, 2)
    g.scale = torch.linspace(0.05, 0.9, x.shape[0] * 2, dtype=x.dtype).reshape(-1, 2)
    return g


def test_free_bits_matches_its_closed_form(lg_model, lg_data):
    r"""E[L_λ] = ELBO − Σ_j relu(λ − KL_j), with ELBO = log p(x) − KL(q ‖ p(z|x)) exactly."""
    g = ffg_guide(lg_model, lg_data)
    q = dist.Normal(g.loc, g.scale)
    kl_j = kl_divergence(q, dist.Normal(torch.zeros_like(g.loc), torch.ones_like(g.loc)))   # (N, 2)
    lam = float(kl_j.median().detach())          # about half the (datapoint, dimension) pairs are held up
    q_mvn = dist.MultivariateNormal(g.loc, torch.diag_embed(g.scale ** 2))
    elbo = lg_model.exact_log_marginal(lg_data) - kl_divergence(q_mvn, lg_model.exact_posterior(lg_data))
    exact = elbo - (lam - kl_j).clamp(min=0).sum(-1)
    pyro.set_rng_seed(0)
    with torch.no_grad():
        est = FreeBitsELBO(lam / LN2, num_particles=20_000).objective(lg_model, g, lg_data)
    se = est.std(0) / est.shape[0] ** 0.5
    assert torch.all((est.mean(0) - exact).abs() < Z * se + 1e-9), (est.mean(0) - exact, se)
    assert (kl_j < lam).any() and (kl_j > lam).any()
    assert (exact < elbo - 1e-3).any()          # the free bits really bind for some datapoints


def test_free_bits_group_fallback_is_a_per_sample_lower_bound(lg_model, lg_data):
    """A full-covariance guide has no per-dimension KL: the site is one group, and each sample's
    objective is log w − relu(2λ − (log q − log p)) ≤ log w for the very same draw."""
    g = LocalFullCov(lg_model, lg_data.shape[0], init_scale=0.4).double()
    g.loc = torch.full((lg_data.shape[0], 2), 0.3, dtype=lg_data.dtype)
    lam_bits = 1.0       # the group's KL is 0.73 nats: single-sample estimates fall on both sides of 2λ ln 2
    with torch.no_grad():
        pyro.set_rng_seed(3)
        fb = FreeBitsELBO(lam_bits, num_particles=50).objective(lg_model, g, lg_data)
        pyro.set_rng_seed(3)
        gt, mt = guide_model_traces(lg_model, g, lg_data, 50)
    lw = sum_log_prob(mt, fb.shape) - sum_log_prob(gt, fb.shape)
    mc_kl = gt.nodes["z"]["fn"].log_prob(gt.nodes["z"]["value"]) - mt.nodes["z"]["fn"].log_prob(mt.nodes["z"]["value"])
    assert torch.allclose(fb, lw - (2 * lam_bits * LN2 - mc_kl).clamp(min=0), rtol=0, atol=1e-10)
    held = lw - fb
    assert torch.all(held > -1e-10) and (held > 1e-3).any() and (held.abs() < 1e-10).any()


def test_free_bits_training_and_config(tmp_path):
    cfg = TrainConfig(dataset="digits", latent_dim=4, hidden=32, guide_options={"hidden": 32}, batch_size=100,
                      num_train=400, epochs=4, free_bits=0.5)
    res = train(cfg, tmp_path / "fb", progress=False)
    assert res.log[-1]["valid_elbo"] > res.log[0]["valid_elbo"]
    for bad, match in [(dict(free_bits=-1.0), "free_bits=-1.0"), (dict(free_bits=float("nan")), "free_bits=nan"),
                       (dict(free_bits=0.1, objective="iwae"), "objective='iwae'"),
                       (dict(free_bits=0.1, anneal="kl", anneal_epochs=2), "anneal='kl'")]:
        with pytest.raises(ConfigError, match=match):
            TrainConfig(**bad)
    with pytest.raises(ConfigError, match="free_bits=0"):
        FreeBitsELBO(0.0)
