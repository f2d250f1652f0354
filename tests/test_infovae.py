r"""The InfoVAE objectives (:mod:`pyro_vaegap.infovae`): the MMD estimator against the closed form for
Gaussians, the SVGD direction against the closed-form kernelized Stein expectation, the special cases
(ELBO, beta-VAE, AAE) against the library's objectives on the same draws, short trainings of every
divergence, exact resume of the adversarial critic, and the configuration's refusals.

Monte Carlo checks compare a mean of independent replicate estimates with its exact value within
``Z`` standard errors of that mean (the SE estimated from the replicates); with ``Z = 4.5`` a correct
estimator fails one comparison with probability about 7e-6."""
import json
import math

import pyro
import pytest
import torch
from pyro.contrib.gp.kernels import RBF
from pyro.infer import Trace_ELBO
from pyro.infer.trace_mmd import _compute_mmd

from pyro_vaegap.cli import main
from pyro_vaegap.infovae import InfoVAE, MMDKernel, critic_loss, mmd, svgd_direction
from pyro_vaegap.models import BernoulliVAE, GaussianVAE
from pyro_vaegap.objectives import Annealing, make_objective
from pyro_vaegap.registry import families, get_family
from pyro_vaegap.traces import guide_model_traces, sum_log_prob
from pyro_vaegap.train import TrainConfig, train
from pyro_vaegap.utils import ConfigError

Z = 4.5
D = 3


def replicate_mean(fn, reps):
    vals = torch.stack([torch.as_tensor(fn()) for _ in range(reps)])
    return vals.mean(0), vals.std(0) / math.sqrt(reps), vals


def gauss_rbf(delta2, v, sigma2, d):
    r""":math:`\mathbb E\exp(-\Vert u\Vert^2/2\sigma^2)` for :math:`u\sim\mathcal N(\delta, vI_d)`, :math:`\Vert\delta\Vert^2 =` ``delta2``."""
    return (sigma2 / (sigma2 + v)) ** (d / 2) * math.exp(-delta2 / (2 * (sigma2 + v)))


def mmd_closed_form(mu1, s1, mu2, s2, scales, d=D):
    r"""MMD² of N(mu1, s1² I) and N(mu2, s2² I) for MMDKernel("rbf", scales): 2σ² = s d per scale,
    E k(x,x') + E k(y,y') − 2 E k(x,y) with x − x' ~ N(0, 2 s1² I), x − y ~ N(mu1 − mu2, (s1² + s2²) I)."""
    delta2 = float(((mu1 - mu2) ** 2).sum())
    return sum(gauss_rbf(0, 2 * s1 ** 2, s * d / 2, d) + gauss_rbf(0, 2 * s2 ** 2, s * d / 2, d)
               - 2 * gauss_rbf(delta2, s1 ** 2 + s2 ** 2, s * d / 2, d) for s in scales)


# ----------------------------------------------------------------------------- MMD
def test_mmd_matches_the_gaussian_closed_form_and_the_v_statistic_does_not():
    """200 replicates of n = m = 100 draws, multi-scale RBF (s = 1, 2): the U-statistic's mean is within
    Z SE of the closed form; the V-statistic (Trace_MMD's) on the same draws is biased upward by
    (E k(x,x) − E k(x,x'))/n + (E k(y,y) − E k(y,y'))/m ≈ 0.022, about 8 SE."""
    torch.manual_seed(0)
    mu1, mu2 = torch.tensor([0.5, 0.0, -0.3], dtype=torch.float64), torch.zeros(D, dtype=torch.float64)
    kernel = MMDKernel("rbf", (1.0, 2.0))
    exact = mmd_closed_form(mu1, 0.8, mu2, 1.0, kernel.scales)
    draws = [(mu1 + 0.8 * torch.randn(100, D, dtype=torch.float64), mu2 + torch.randn(100, D, dtype=torch.float64))
             for _ in range(200)]
    u = torch.stack([mmd(x, y, kernel) for x, y in draws])
    v = torch.stack([mmd(x, y, kernel, unbiased=False) for x, y in draws])
    se = float(u.std() / math.sqrt(len(u)))
    assert abs(float(u.mean()) - exact) < Z * se, (float(u.mean()), exact, se)
    assert float(v.mean()) - exact > Z * se, (float(v.mean()), exact, se)
    assert exact > 20 * se  # the two distributions are told apart


@pytest.mark.parametrize("kind", ["rbf", "imq"])
def test_mmd_of_identical_distributions_is_zero_within_its_standard_error(kind):
    """Same distribution on both sides: the U-statistic is unbiased for 0 (so it takes negative values too)."""
    torch.manual_seed(1)
    kernel = MMDKernel(kind, (0.5, 1.0, 2.0))
    u = torch.stack([mmd(torch.randn(60, D, dtype=torch.float64) * 1.3, torch.randn(60, D, dtype=torch.float64) * 1.3,
                         kernel) for _ in range(300)])
    se = float(u.std() / math.sqrt(len(u)))
    assert abs(float(u.mean())) < Z * se, (float(u.mean()), se)
    assert (u < 0).any() and (u > 0).any()


def test_mmd_groups_leave_out_dependent_pairs():
    r"""S = 3 draws per datapoint, z_sb = 0.8 x_b + 0.6 ε with x_b ~ N(0, I): the aggregate posterior is
    N(0, 0.64 + 0.36 = 1) = the prior, so MMD² = 0. With the datapoints as groups the estimate is
    unbiased (mean within Z SE of 0); treating all S·B draws as independent is biased upward (draws
    of one datapoint are closer), which the test must see."""
    torch.manual_seed(2)
    kernel, S, B = MMDKernel("rbf"), 3, 40
    grouped, naive = [], []
    for _ in range(300):
        x = torch.randn(B, D, dtype=torch.float64)
        z = (0.8 * x + 0.6 * torch.randn(S, B, D, dtype=torch.float64)).reshape(S * B, D)
        y = torch.randn(S * B, D, dtype=torch.float64)
        grouped.append(mmd(z, y, kernel, group=torch.arange(B).repeat(S)))
        naive.append(mmd(z, y, kernel))
    grouped, naive = torch.stack(grouped), torch.stack(naive)
    se_g, se_n = float(grouped.std() / math.sqrt(300)), float(naive.std() / math.sqrt(300))
    assert abs(float(grouped.mean())) < Z * se_g, (float(grouped.mean()), se_g)
    assert float(naive.mean()) > 2 * Z * se_n, (float(naive.mean()), se_n)


def test_weighted_mmd_matches_the_closed_form_of_a_mixture():
    r"""The weighted estimator (a mixture guide's strata): each datapoint draws one z from each component
    of q = 0.3 N(−1, 0.5²) + 0.7 N(1, 0.5²) (per coordinate), weighted by the mixture weights. Closed form
    with 2σ² = d: E_qq = Σ_ab π_a π_b G(μ_a − μ_b, 2s²), E_qp = Σ_a π_a G(μ_a, s² + 1), E_pp = G(0, 2)."""
    torch.manual_seed(3)
    pis, mus, s = [0.3, 0.7], [-1.0, 1.0], 0.5
    kernel, B = MMDKernel("rbf"), 30
    sig2 = D / 2
    qq = sum(pa * pb * gauss_rbf(D * (ma - mb) ** 2, 2 * s ** 2, sig2, D) for pa, ma in zip(pis, mus)
             for pb, mb in zip(pis, mus))
    qp = sum(pa * gauss_rbf(D * ma ** 2, s ** 2 + 1, sig2, D) for pa, ma in zip(pis, mus))
    exact = qq + gauss_rbf(0, 2, sig2, D) - 2 * qp
    w = torch.tensor(pis, dtype=torch.float64).repeat_interleave(B)   # stratum m, datapoint b: row m*B + b
    vals = []
    for _ in range(300):
        z = torch.cat([m + s * torch.randn(B, D, dtype=torch.float64) for m in mus])
        vals.append(mmd(z, torch.randn(2 * B, D, dtype=torch.float64), kernel, group=torch.arange(B).repeat(2),
                        weight=w))
    vals = torch.stack(vals)
    se = float(vals.std() / math.sqrt(len(vals)))
    assert abs(float(vals.mean()) - exact) < Z * se, (float(vals.mean()), exact, se)


def test_v_statistic_is_pyros_trace_mmd_estimator_on_the_same_draws():
    """``mmd(..., unbiased=False)`` with the RBF kernel 2σ² = d is Pyro's Trace_MMD estimator
    (``_compute_mmd`` with ``gp.kernels.RBF``, lengthscale σ) on the very same draws, to float precision."""
    torch.manual_seed(4)
    x, y = torch.randn(50, D) + 0.3, torch.randn(70, D)
    pyros = _compute_mmd(y, x, RBF(D, lengthscale=torch.tensor(math.sqrt(D / 2)))).detach()
    ours = mmd(x, y, MMDKernel("rbf"), unbiased=False)
    assert float(ours) == pytest.approx(float(pyros), rel=1e-5, abs=1e-6)


# ----------------------------------------------------------------------------- Stein
def stein_closed_form(z, m, s, h):
    r"""E_{z'~N(m, s² I)}[k(z', z) ∇log p(z') + ∇_{z'} k(z', z)] for p = N(0, I), k = exp(−‖z − z'‖²/h):
    with c = h/2, E k = (c/(s²+c))^{d/2} exp(−‖z−m‖²/(2(s²+c))), E[k z'] = E k · (c m + s² z)/(s² + c), so
    φ(z) = −E k · [(c + 1) m + (s² − 1) z] / (s² + c)."""
    c, d = h / 2, z.shape[-1]
    ek = (c / (s ** 2 + c)) ** (d / 2) * torch.exp(-((z - m) ** 2).sum(-1, keepdim=True) / (2 * (s ** 2 + c)))
    return -ek * ((c + 1) * m + (s ** 2 - 1) * z) / (s ** 2 + c)


def test_svgd_direction_matches_the_kernelized_stein_closed_form():
    """At 5 fixed points (particles of weight 0), φ from 500 draws of q = N(m, 0.7² I), p = N(0, I),
    fixed bandwidth h = 2; 100 replicates; each of the 10 coordinates within Z SE of the closed form."""
    torch.manual_seed(5)
    m, s, h, d = torch.tensor([1.0, -0.5], dtype=torch.float64), 0.7, 2.0, 2
    at = torch.tensor([[0.0, 0.0], [1.0, -0.5], [2.0, 1.0], [-1.0, 0.5], [0.5, -2.0]], dtype=torch.float64)
    w = torch.cat([torch.zeros(5), torch.ones(500)]).double()

    def once():
        z = torch.cat([at, m + s * torch.randn(500, d, dtype=torch.float64)])
        return svgd_direction(z, -z, bandwidth=h, weight=w)[:5]

    mean, se, _ = replicate_mean(once, 100)
    exact = stein_closed_form(at, m, s, h)
    assert torch.all((mean - exact).abs() < Z * se), (mean, exact, se)
    assert int((exact.abs() > 10 * se).sum()) >= 5   # mostly far from a trivial zero


def test_mean_svgd_direction_is_minus_the_shrunk_mean_shift():
    r"""Averaged over q's particles, E_q φ = −(c/(c + 2s²))^{d/2} m: the SVGD direction pulls the particles'
    mean back towards the prior's, proportionally to the mean shift (∇_m KL(N(m, s²) ‖ N(0, I)) = m). The
    estimate averages over all n particles including each one's own term, a bias of at most
    ‖m‖/n = 0.0023 (E of the self term −z/n), added to the tolerance."""
    torch.manual_seed(6)
    m, s, h, d, n = torch.tensor([1.0, -0.5, 0.25], dtype=torch.float64), 0.6, 3.0, 3, 500
    mean, se, _ = replicate_mean(
        lambda: svgd_direction(z := m + s * torch.randn(n, d, dtype=torch.float64), -z, bandwidth=h).mean(0), 100)
    c = h / 2
    exact = -(c / (c + 2 * s ** 2)) ** (d / 2) * m
    assert torch.all((mean - exact).abs() < Z * se + float(m.norm()) / n), (mean, exact, se)


def test_prior_score_is_read_from_the_model_trace():
    """∇ log p(z) of the model's N(0, I) prior, from its trace, is −z."""
    model = BernoulliVAE(12, 3, 8)
    guide = get_family("ffg").make_amortized(model, hidden=8)
    x = (torch.rand(5, 12) < 0.5).float()
    g, m = guide_model_traces(model, guide, x, 2)
    z = {"z": g.nodes["z"]["value"]}
    score = InfoVAE(0.0, 2.0, "stein").prior_score(model, m, x, z)
    assert torch.allclose(score["z"], -z["z"])


# ----------------------------------------------------------------------------- special cases
def small_setup(family, seed=0):
    torch.manual_seed(seed)
    if family == "vlae":  # Gaussian decoders only (tests/test_vlae.py)
        model = GaussianVAE(12, 2, 8, variance="fixed", sigma2=0.5).double()
        guide = get_family(family).make_amortized(model).double()
        return model, guide, torch.rand(10, 12, dtype=torch.float64)
    model = BernoulliVAE(12, 2, 8).double()
    guide = get_family(family).make_amortized(model).double()
    x = (torch.rand(10, 12, dtype=torch.float64) < 0.4).double()
    return model, guide, x


def same_draws(objective_a, objective_b, model, guide, x, seed=3, models=None):
    (ma, ga), (mb, gb) = models or ((model, guide), (model, guide))
    pyro.set_rng_seed(seed)
    a = objective_a.differentiable_loss(ma, ga, x)
    pyro.set_rng_seed(seed)
    b = objective_b.differentiable_loss(mb, gb, x)
    return a, b


AMORTIZED = sorted(name for name, fam in families().items() if fam.amortized is not None)


@pytest.mark.parametrize("family", AMORTIZED)
@pytest.mark.parametrize("divergence", ["mmd", "stein", "adversarial"])
def test_alpha_0_lambda_1_is_the_elbo_of_every_family(family, divergence):
    """α = 0, λ = 1: the value of the library's own ELBO objective for the family (Trace_ELBO, or the
    mixture's stratified estimator), on the same draws, 3 particles, to float64 precision."""
    model, guide, x = small_setup(family)
    cfg = TrainConfig(guide=family, num_particles=3)
    info = InfoVAE(0.0, 1.0, divergence, num_particles=3, latent_dim=2)
    if getattr(guide, "custom_elbo", False) and not getattr(guide, "stratified_elbo", False):
        # a family whose training objective is its own (gpvae's eq. 15, rme's stage criteria) cannot have
        # InfoVAE's terms reweighted: refused with the reason, never silently trained on something else
        with pytest.raises(ConfigError, match=f"guide {type(guide).__name__} trains with an objective of its own"):
            info.differentiable_loss(model, guide, x)
        return
    a, b = same_draws(info, make_objective(cfg, guide), model, guide, x)
    assert float(a.detach()) == pytest.approx(float(b.detach()), rel=1e-12, abs=1e-10)


@pytest.mark.parametrize("family", ["ffg", "householder"])
def test_beta_vae_special_cases(family):
    """α + λ − 1 = 0 (any D) is the β-VAE with β = 1 − α, and D = KL is the β-VAE with β = λ: the value
    and the gradients of Trace_ELBO on the KL-annealed model and guide (latent sites scaled by β), on
    the same draws."""
    model, guide, x = small_setup(family)
    for alpha, lam, div in [(0.3, 0.7, "mmd"), (-0.5, 1.5, "stein"), (0.3, 2.5, "kl"), (0.9, 0.2, "kl")]:
        beta = lam
        ann = Annealing("kl", model, guide)
        ann.factor = beta
        info = InfoVAE(alpha, lam, div, num_particles=2)
        elbo = Trace_ELBO(num_particles=2, vectorize_particles=True, max_plate_nesting=1)
        a, b = same_draws(info, elbo, model, guide, x, models=((model, guide), (ann.model, ann.guide)))
        assert float(a.detach()) == pytest.approx(float(b.detach()), rel=1e-12), (alpha, lam, div)
        params = list(model.parameters()) + list(guide.parameters())
        ga, gb = torch.autograd.grad(a, params), torch.autograd.grad(b, params)
        assert all(torch.allclose(u, v, rtol=1e-10, atol=1e-12) for u, v in zip(ga, gb)), (alpha, lam, div)


def test_alpha_1_lambda_1_adversarial_is_the_aae():
    """α = 1, λ = 1, adversarial: no per-datapoint KL. From the traces of the same draws, the loss is
    −Σ_b log p(x_b|z_b) + B·(log 2 − ½ critic loss) and its gradient that of
    −Σ_b log p(x_b|z_b) + B·½·mean_b softplus(−ℓ(z_b)) (the non-saturating generator loss)."""
    model, guide, x = small_setup("ffg")
    info = InfoVAE(1.0, 1.0, "adversarial", latent_dim=2)
    info.critic.double()
    B = x.shape[0]
    pyro.set_rng_seed(7)
    loss = info.differentiable_loss(model, guide, x)
    pyro.set_rng_seed(7)
    g, m = guide_model_traces(model, guide, x, 1)
    y = m.nodes["z"]["fn"].rsample().reshape(B, 2)       # the prior draws, drawn right after the traces
    z = g.nodes["z"]["value"].reshape(B, 2)
    recon = sum_log_prob(m, (1, B), observed=True).sum()
    with torch.no_grad():
        js = math.log(2) - 0.5 * float(critic_loss(info.critic, z, y))
    assert float(loss.detach()) == pytest.approx(float(-recon.detach()) + B * js, rel=1e-12)
    explicit = -recon + B * 0.5 * torch.nn.functional.softplus(-info.critic(z)).mean()
    params = list(guide.parameters()) + list(model.parameters())
    ga, gb = torch.autograd.grad(loss, params), torch.autograd.grad(explicit, params)
    assert all(torch.allclose(u, v, rtol=1e-10, atol=1e-12) for u, v in zip(ga, gb))
    assert all(p.grad is None for p in info.critic.parameters())   # the generator's loss leaves the critic alone


# ----------------------------------------------------------------------------- training
SMALL = dict(dataset="digits", latent_dim=4, hidden=32, guide_options={"hidden": 32}, batch_size=100, num_train=400,
             objective="infovae")


@pytest.mark.parametrize("divergence,alpha,lam,column", [("mmd", 1.0, 10.0, "mmd2"), ("stein", 0.0, 10.0, "stein_surrogate"),
                                                         ("adversarial", 1.0, 1.0, "js"), ("kl", 0.0, 0.5, "kl")])
def test_short_training_improves_its_objective(tmp_path, divergence, alpha, lam, column):
    """4 epochs on 400 digits: the training objective (logged per epoch) rises, and the divergence's
    column is logged."""
    cfg = TrainConfig(epochs=4, alpha=alpha, lambda_=lam, divergence=divergence, **SMALL)
    res = train(cfg, tmp_path / divergence, progress=False)
    objective = [r["train_objective"] for r in res.log]
    assert objective[-1] > objective[0] + 0.5, objective
    assert all(math.isfinite(r[column]) and math.isfinite(r["valid_elbo"]) for r in res.log)
    assert f",{column}\n" in (tmp_path / divergence / "log.csv").read_text().split("\n", 1)[0] + "\n"


def test_mixture_guide_trains_through_its_strata(tmp_path):
    cfg = TrainConfig(epochs=3, alpha=1.0, lambda_=5.0, divergence="mmd", guide="mixture", num_particles=2,
                      **{**SMALL, "num_train": 200, "guide_options": {"hidden": 32, "num_components": 2}})
    res = train(cfg, tmp_path / "mix", progress=False)
    assert res.log[-1]["train_objective"] > res.log[0]["train_objective"]


def test_adversarial_resume_is_exact_and_keeps_the_critic(tmp_path):
    cfg = TrainConfig(epochs=4, alpha=1.0, lambda_=1.0, divergence="adversarial", disc_steps=2, disc_hidden=16, **SMALL)
    full = train(cfg, tmp_path / "a", progress=False)
    train(cfg, tmp_path / "b", stop_after=2, progress=False)
    resumed = train(cfg, tmp_path / "b", resume=True, progress=False)
    for a, b in [(full.model, resumed.model), (full.guide, resumed.guide)]:
        sa, sb = a.state_dict(), b.state_dict()
        assert all(torch.equal(sa[k], sb[k]) for k in sa)
    ca, cb = (torch.load(tmp_path / r / "checkpoint.pt", weights_only=False)["objective"] for r in "ab")
    assert ca["critic"].keys() == cb["critic"].keys() and all(torch.equal(ca["critic"][k], cb["critic"][k])
                                                               for k in ca["critic"])
    assert [r["js"] for r in full.log] == [r["js"] for r in resumed.log]


# ----------------------------------------------------------------------------- configuration
def test_config_fills_in_what_applies_and_is_saved(tmp_path, capsys):
    cfg = TrainConfig(objective="infovae", alpha=1, lambda_=2, divergence="mmd", mmd_scales=[0.5, "2"])
    assert (cfg.alpha, cfg.lambda_, cfg.mmd_kernel, cfg.mmd_scales, cfg.disc_lr) == (1.0, 2.0, "rbf", (0.5, 2.0), None)
    assert TrainConfig(objective="infovae", alpha=0, lambda_=1).divergence == "mmd"
    assert main(["train", "--run-dir", str(tmp_path / "r"), "--objective", "infovae", "--alpha", "1", "--lambda", "1",
                 "--divergence", "adversarial", "--disc-steps", "2", "--latent-dim", "2", "--hidden", "8",
                 "--guide-options", '{"hidden": 8}', "--epochs", "1", "--quiet"]) == 0
    saved = json.loads((tmp_path / "r" / "config.json").read_text())["config"]
    assert {k: saved[k] for k in ("objective", "alpha", "lambda_", "divergence", "disc_lr", "disc_steps", "mmd_kernel")} \
        == {"objective": "infovae", "alpha": 1.0, "lambda_": 1.0, "divergence": "adversarial", "disc_lr": 1e-3,
            "disc_steps": 2, "mmd_kernel": None}
    # resuming with another --lambda names the flag as the user spells it
    assert main(["train", "--run-dir", str(tmp_path / "r"), "--resume", "--lambda", "2", "--quiet"]) == 2
    assert "--lambda 2.0 differs from the run's lambda_=1.0" in capsys.readouterr().err


@pytest.mark.parametrize("bad,match", [
    (dict(alpha=1.0), r"alpha=1.0 applies only to objective='infovae', not to objective='elbo'"),
    (dict(objective="iwae", divergence="mmd", lambda_=2.0), r"lambda_=2.0, divergence='mmd' apply only to"),
    (dict(objective="infovae", lambda_=1.0), r"objective='infovae' needs alpha"),
    (dict(objective="infovae", alpha=float("nan"), lambda_=1.0), r"alpha=nan is not allowed: expected a finite number"),
    (dict(objective="infovae", alpha=0.0, lambda_=float("inf")), r"lambda_=inf is not allowed"),
    (dict(objective="infovae", alpha=0.0, lambda_=1.0, divergence="wasserstein"), r"divergence='wasserstein' is not allowed"),
    (dict(objective="infovae", alpha=0.0, lambda_=1.0, divergence="stein", mmd_kernel="imq"),
     r"mmd_kernel='imq' applies only to divergence='mmd'"),
    (dict(objective="infovae", alpha=0.0, lambda_=1.0, disc_steps=2), r"disc_steps=2 applies only to divergence='adversarial'"),
    (dict(objective="infovae", alpha=0.0, lambda_=1.0, mmd_scales=(1.0, 0.0)), r"mmd_scales=1.0,0.0 is not allowed"),
    (dict(objective="infovae", alpha=0.0, lambda_=1.0, mmd_kernel="gauss"), r"mmd_kernel='gauss' is not allowed"),
    (dict(objective="infovae", alpha=1.5, lambda_=1.0), r"alpha=1.5 is not allowed with divergence='mmd'"),
    (dict(objective="infovae", alpha=0.0, lambda_=0.5), r"alpha \+ lambda_ - 1 = -0.5 < 0 is not allowed"),
    (dict(objective="infovae", alpha=0.0, lambda_=-1.0, divergence="kl"), r"lambda_=-1.0 is not allowed with divergence='kl'"),
    (dict(objective="infovae", alpha=1.0, lambda_=1.0, divergence="adversarial", disc_lr=0.0), r"disc_lr=0.0 is not allowed"),
    (dict(objective="infovae", alpha=1.0, lambda_=1.0, divergence="adversarial", disc_steps=0), r"disc_steps=0 is not allowed"),
    (dict(objective="infovae", alpha=0.0, lambda_=1.0, anneal="kl", anneal_epochs=2), r"cannot be combined with anneal='kl'"),
])
def test_bad_infovae_configs(bad, match):
    with pytest.raises(ConfigError, match=match):
        TrainConfig(**bad)


def test_a_last_minibatch_of_one_row_is_refused_before_training(tmp_path):
    cfg = TrainConfig(epochs=1, alpha=1.0, lambda_=2.0, **{**SMALL, "num_train": 201})
    with pytest.raises(ConfigError, match="leave a last batch of 1"):
        train(cfg, tmp_path / "r", progress=False)
    assert not (tmp_path / "r" / "checkpoint.pt").exists()
