"""Tests of the GPVAE guide family (guides/gpvae.py). Seeded, CPU, offline, float64 where values are compared.

Monte Carlo comparisons use 4 standard errors of the estimators involved; exact ones are stated where used.
"""
import csv
import json
import math

import pytest
import torch
from pyro import poutine
from torch.distributions import MultivariateNormal, Normal, kl_divergence

from pyro_vaegap.cli import main
from pyro_vaegap.data import load_dataset, seeded_subset
from pyro_vaegap.guide import check_guide
from pyro_vaegap.guides.gpvae import expected_log_square
from pyro_vaegap.models import BernoulliVAE
from pyro_vaegap.objectives import MeanFieldELBO
from pyro_vaegap.registry import get_family
from pyro_vaegap.traces import log_weights
from pyro_vaegap.train import load_run
from pyro_vaegap.utils import ConfigError, set_seed

Z = 4.0


@pytest.fixture(autouse=True)
def seeded():
    set_seed(0)


def tiny_model(latent_dim=3, data_dim=6):
    return BernoulliVAE(data_dim, latent_dim, hidden=8, decoder_layers=1).double()


def binary(n, d, seed=1):
    return (torch.rand(n, d, generator=torch.Generator().manual_seed(seed)) < 0.5).double()


def noisy_guide(model, hidden=8, seed=2, **options):
    """A GPVAE guide whose q(W, U) is far from its near-VAE initialization: means of scale 0.3 and
    Cholesky factors with diagonals 0.47–0.97 and off-diagonal entries of scale 0.3, so (with the
    untrained features' ‖ψ‖ ≈ 0.5) Var f, Var h and (c + ηψ)² are of comparable size and every term of
    eqs. 13 and 16 matters."""
    g = get_family("gpvae").make_amortized(model, hidden=hidden, **options).double()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        g.loc.copy_(0.3 * torch.randn(g.loc.shape, generator=gen, dtype=torch.float64))
        g.tril_raw.copy_(0.3 * torch.randn(g.tril_raw.shape, generator=gen, dtype=torch.float64))
        diag = g.tril_raw.diagonal(dim1=0, dim2=3)
        diag.copy_(torch.rand(diag.shape, generator=gen, dtype=torch.float64) - 0.5)  # softplus: 0.47-0.97
    return g


def eq9_draws(guide, x, num):
    """``num`` draws of (W, U) from q(W, U) (eq. 11, full matrices), and for each a draw of z from
    q(z | x, W, U) (eq. 9): returns ``(z, f, h)``, each ``(num, B, d)``, with f = Wψ and h = Uψ."""
    with torch.no_grad():
        WU = guide.weight_distribution().sample((num,))           # (num, 2, d, p)
        mo = guide.moments(x)
        fh = torch.einsum("skjp,bkp->skbj", WU, mo.psi)            # (num, 2, B, d): Wψ^m, Uψ^s
        f, h = fh[:, 0], fh[:, 1]
        z = mo.base_loc + f + (mo.base_scale + h) * torch.randn_like(f)
    return z, f, h


# ----------------------------------------------------------------------------- eq. 13
FEATURE_OPTIONS = {"shared": {}, "separate": {"features": "separate", "feature_width": 5}}


@pytest.mark.parametrize("features", FEATURE_OPTIONS)
def test_moment_matching_equals_the_moments_of_eq9_draws(features):
    """m(x), v(x) of eq. 13 are the mean and variance of z when (W, U) ~ q(W, U) and z ~ q(z|x,W,U),
    and uncertainty(x) is the summed variance of f = Wψ and h = Uψ: 200,000 draws, each within 4
    standard errors of its estimator (mean: sqrt(v/S); sample variance: sqrt((μ4 − v²)/S) with the
    sample fourth central moment; summed variance: the std of the per-draw sum of squared deviations
    over sqrt(S)). The 14 comparisons at 4 s.e. (a two-sided normal tail of 6e-5 each) fail by chance
    with probability < 0.1 %. With separate feature networks (the paper's ψ^m, ψ^s, here of width 5
    against the base encoder's 8), f = Wψ^m and h = Uψ^s are drawn from their own features."""
    model = tiny_model()
    x = binary(2, 6)
    g = noisy_guide(model, **FEATURE_OPTIONS[features])
    S = 200_000
    z, f, h = eq9_draws(g, x, S)
    with torch.no_grad():
        mo = g.moments(x)
        unc = g.uncertainty(x)
    dev = z - z.mean(0)
    var = dev.square().sum(0) / (S - 1)
    se_mean = (var / S).sqrt()
    se_var = ((dev.pow(4).mean(0) - var.square()) / S).sqrt()
    assert ((z.mean(0) - mo.loc).abs() < Z * se_mean).all(), ((z.mean(0) - mo.loc) / se_mean)
    assert ((var - mo.var).abs() < Z * se_var).all(), ((var - mo.var) / se_var)
    # the three parts of v matter: none is negligible against the standard error of the variance
    assert (mo.var_f > 10 * se_var).all() and (mo.var_h > 10 * se_var).all()
    assert (mo.scale_mean.square() > 10 * se_var).all()
    per_draw = ((f - f.mean(0)).square() + (h - h.mean(0)).square()).sum(-1)   # (S, B)
    total, se_total = per_draw.mean(0) * S / (S - 1), per_draw.std(0) / math.sqrt(S)
    assert ((total - unc).abs() < Z * se_total).all(), ((total - unc) / se_total)
    # the guide's site "z" is this Gaussian
    site = poutine.trace(g).get_trace(x).nodes["z"]["fn"].base_dist
    assert torch.equal(site.loc, mo.loc) and torch.allclose(site.scale.square(), mo.var, rtol=1e-12, atol=0)


@pytest.mark.parametrize("features", FEATURE_OPTIONS)
def test_cached_evaluation_pass_equals_the_uncached_one_and_follows_parameter_changes(features):
    """Without gradients, encode() uses Σ_j + Γ_j computed once (ψᵀ(Σ_j + Γ_j)ψ in one product): it gives
    the moments of eq. 13 to float64 rounding (relative 1e-12), and after an optimizer step and after
    load_state_dict it gives the new parameters' moments, not stale ones."""
    model = tiny_model()
    x = binary(5, 6)
    g = noisy_guide(model, **FEATURE_OPTIONS[features])

    def both():
        mo = g.moments(x)
        with torch.no_grad():
            loc, scale = g.encode(x)
        return (mo.loc.detach(), mo.scale.detach()), (loc, scale)

    def check():
        (loc0, scale0), (loc1, scale1) = both()
        assert torch.allclose(loc1, loc0, rtol=1e-12, atol=0) and torch.allclose(scale1, scale0, rtol=1e-12, atol=0)
        return scale1

    before = check()
    opt = torch.optim.SGD(g.parameters(), lr=0.5)
    (g.moments(x).var.sum() + g.weight_kl()).backward()
    opt.step()
    after_step = check()
    assert not torch.allclose(after_step, before)
    other = noisy_guide(model, seed=7, **FEATURE_OPTIONS[features])
    g.load_state_dict(other.state_dict())
    after_load = check()
    assert not torch.allclose(after_load, after_step)


# ----------------------------------------------------------------------------- eq. 16 and KL(q(W,U) || p)
@pytest.mark.parametrize("expected_log", ["monte_carlo", "closed_form"])
def test_expected_kl_of_eq16_matches_monte_carlo_over_the_weights(expected_log):
    """E_q(W,U) KL(q(z|x,W,U) || N(0, I)) of the guide (closed form but for E log(c + uᵀψ)², by
    reparameterized draws of the scalar uᵀψ, or by its own closed form) equals the mean over 200,000
    full draws of (W, U) of torch's Normal–Normal KL: within 4 combined standard errors (the guide's
    from 400 replicates of its 50-draw estimate — zero for the closed form —, the reference's from the
    spread of its draws). The scale of U is large here (Var h comparable to (c + ηψ)²), so E KL exceeds
    the moment-matched marginal's own KL by many standard errors: the expectation is not that KL in
    disguise."""
    model = tiny_model()
    x = binary(2, 6)
    g = noisy_guide(model)
    g.expected_log = expected_log
    z, f, h = eq9_draws(g, x, 200_000)
    with torch.no_grad():
        mo = g.moments(x)
        ref = kl_divergence(Normal(mo.base_loc + f, (mo.base_scale + h).abs()), Normal(0.0, 1.0)).sum(-1)  # (S, B)
        ref_mean, ref_se = ref.mean(0), ref.std(0) / math.sqrt(ref.shape[0])
        reps = torch.stack([g.expected_kl(mo, 50) for _ in range(400)])
        ours, ours_se = reps.mean(0), reps.std(0) / math.sqrt(reps.shape[0])
        marginal_kl = kl_divergence(Normal(mo.loc, mo.scale), Normal(0.0, 1.0)).sum(-1)
    se = torch.hypot(ref_se, ours_se)
    assert ((ours - ref_mean).abs() < Z * se).all(), ((ours - ref_mean) / se)
    assert (ref_mean - marginal_kl > 20 * se).all(), (ref_mean - marginal_kl, se)


@pytest.mark.parametrize("sigma", [0.05, 1.0, 3.0])
def test_expected_log_square_matches_quadrature(sigma):
    """E log X², X ~ N(μ, σ²), by the Poisson–digamma series (|μ/σ| ≤ 10) and the asymptotic series
    (beyond) equals scipy's adaptive quadrature of log x² against the normal density, split at the
    singularity x = 0, for μ/σ from 0 to 300, on both sides of the crossover: to 1e-8 absolute
    (quadrature's own error estimates are below 1e-11; the asymptotic series' first omitted term is
    below 2e-9 at the crossover). At μ = 0 it is the textbook log σ² + ψ(1/2) + log 2."""
    integrate = pytest.importorskip("scipy.integrate")
    ratios = [0.0, 1e-3, 0.4, 1.0, 2.7, 6.0, 9.99, 10.0, 10.01, 14.0, 40.0, 300.0]
    mean = sigma * torch.tensor(ratios, dtype=torch.float64)
    ours = expected_log_square(mean, torch.tensor(sigma ** 2, dtype=torch.float64))
    for m, value in zip(mean.tolist(), ours.tolist()):
        def integrand(x):
            return math.log(x * x) * math.exp(-0.5 * ((x - m) / sigma) ** 2) / (sigma * math.sqrt(2 * math.pi))
        lo, hi = m - 40 * sigma, m + 40 * sigma
        pieces = [(lo, 0.0), (0.0, hi)] if lo < 0 < hi else [(lo, hi)]
        ref = sum(integrate.quad(integrand, a, b, limit=400, epsabs=1e-13, epsrel=1e-13)[0] for a, b in pieces)
        assert abs(value - ref) < 1e-8, (m, sigma, value, ref)
    assert abs(ours[0].item() - (2 * math.log(sigma) + torch.special.digamma(torch.tensor(0.5)).item()
                                 + math.log(2))) < 1e-6


def test_expected_log_square_gradients_and_degenerate_variance():
    """Its gradients in μ and σ² match finite differences in both branches (``gradcheck``, float64), and
    σ² = 0 gives log μ² exactly, with finite gradients (the unused branches' infinities stay out)."""
    mean = torch.tensor([0.0, 0.3, -2.0, 25.0, 80.0], dtype=torch.float64, requires_grad=True)
    var = torch.tensor([1.0, 0.2, 2.5, 1.5, 4.0], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(expected_log_square, (mean, var))
    m = torch.tensor([0.7, -1.5], dtype=torch.float64, requires_grad=True)
    out = expected_log_square(m, torch.zeros(2, dtype=torch.float64))
    assert torch.equal(out, m.detach().square().log())
    out.sum().backward()
    assert torch.isfinite(m.grad).all() and torch.allclose(m.grad, 2 / m.detach())


def test_unknown_expected_log_and_feature_options_are_refused():
    make = get_family("gpvae").make_amortized
    with pytest.raises(ConfigError, match="expected_log='exact'.*monte_carlo, closed_form"):
        make(tiny_model(), hidden=8, expected_log="exact")
    with pytest.raises(ConfigError, match="features='own'.*shared, separate"):
        make(tiny_model(), hidden=8, features="own")
    with pytest.raises(ConfigError, match="feature_width=5 needs features='separate'"):
        make(tiny_model(), hidden=8, feature_width=5)


def test_separate_feature_networks_have_the_encoders_architecture_and_their_own_width():
    """features='separate' adds two networks of the base encoder's architecture without its last layer
    (the paper's ψ^m, ψ^s), of width feature_width: W and U are d × p with that p, and ψ^m ≠ ψ^s."""
    model = tiny_model()
    g = get_family("gpvae").make_amortized(model, hidden=8, layers=2, features="separate", feature_width=5).double()
    assert g.feature_dim == 5 and g.loc.shape == (2, 3, 5) and g.tril_raw.shape == (5, 2, 3, 5)
    assert [m.out_features for m in g.feature_nets[0].modules() if isinstance(m, torch.nn.Linear)] == [5, 5]
    with torch.no_grad():
        psi = g.moments(binary(4, 6)).psi
    assert psi.shape == (4, 2, 5) and not torch.allclose(psi[:, 0], psi[:, 1])


def test_weight_kl_matches_torch_multivariate_normal_kl():
    """KL(q(W,U) || N(0, I)) in closed form (‖L‖²_F, ‖μ‖², 2 Σ log L_ii) equals the sum of torch's
    MultivariateNormal(scale_tril) KLs over the 2d rows: two exact formulas, so the tolerance is
    float64 rounding (relative 1e-10)."""
    model = tiny_model()
    g = noisy_guide(model)
    q = g.weight_distribution()
    p = MultivariateNormal(torch.zeros_like(q.loc), scale_tril=torch.eye(q.loc.shape[-1], dtype=torch.float64))
    ref = kl_divergence(q, p).sum()
    with torch.no_grad():
        assert torch.allclose(g.weight_kl(), ref, rtol=1e-10, atol=0), (g.weight_kl(), ref)
        # the initialization is Σ = Γ = σ0² I, μ = η = 0: KL = 2d · p/2 · (σ0² − 1 − log σ0²); relative
        # tolerance 1e-6 because softplus⁻¹(σ0) was stored in float32 before the guide became float64
        g0 = get_family("gpvae").make_amortized(model, hidden=8, init_std=0.01).double()
        d, p_ = g0.latent_dim, g0.feature_dim
        expected = 2 * d * 0.5 * p_ * (0.01 ** 2 - 1 - math.log(0.01 ** 2))
        assert torch.allclose(g0.weight_kl(), torch.tensor(expected, dtype=torch.float64), rtol=1e-6, atol=0)


# ----------------------------------------------------------------------------- Λ = 0 is the VAE
def test_zero_noise_is_exactly_the_ffg_encoder_and_its_bound():
    """With Λ = 0 (noise=False: μ = η = 0, Σ = Γ = 0) and the FFG encoder's weights, the guide's
    q(z|x) has exactly the FFG encoder's parameters (bit for bit), the importance log-weights of the
    same draws are identical, and eq. 15 equals Pyro's TraceMeanField ELBO of the FFG guide (the
    Normal–Normal KL in closed form) on the same draws. Tolerance of the last: float64 rounding
    (relative 1e-12), the two sides adding the same terms in different orders."""
    model = tiny_model()
    x = binary(5, 6)
    ffg = get_family("ffg").make_amortized(model, hidden=16).double()
    with torch.no_grad():  # an encoder away from its initialization
        for prm in ffg.parameters():
            prm.add_(0.3 * torch.randn_like(prm))
    gp = get_family("gpvae").make_amortized(model, hidden=16, noise=False).double()
    gp.base.load_state_dict(ffg.state_dict())
    with torch.no_grad():
        (m, s), (b, c) = gp.encode(x), ffg.encode(x)
    assert torch.equal(m, b) and torch.equal(s, c)
    set_seed(5)
    lw_gp = log_weights(model, gp, x, 30)
    set_seed(5)
    assert torch.equal(lw_gp, log_weights(model, ffg, x, 30))
    S = 20
    set_seed(6)
    ours = gp.elbo(model, x, S)
    set_seed(6)
    pyro_elbo = -MeanFieldELBO(num_particles=S, vectorize_particles=True, max_plate_nesting=1).differentiable_loss(
        model, ffg, x)
    assert torch.allclose(ours.sum(), pyro_elbo, rtol=1e-12, atol=0), (ours.sum(), pyro_elbo)
    with torch.no_grad():
        assert torch.allclose(gp.expected_kl(gp.moments(x), 3),
                              kl_divergence(Normal(b, c), Normal(0.0, 1.0)).sum(-1), rtol=1e-12, atol=0)
    assert gp.weight_kl() == 0
    # with noise=False only the encoder is trained: μ, η and the factors are fixed buffers
    assert {n for n, _ in gp.named_parameters()} == {f"base.{n}" for n, _ in ffg.named_parameters()}


# ----------------------------------------------------------------------------- contract, training, gaps
def test_check_guide_and_errors():
    model = tiny_model()
    x = binary(4, 6)
    fam = get_family("gpvae")
    for options in ({"hidden": 16}, {"hidden": 16, "noise": False}, {"hidden": 16, "layers": 0},
                    {"hidden": 16, "activation": "relu"}):
        check_guide(model, fam.make_amortized(model, **options).double(), x)
    check_guide(model, fam.make_local(model, 4).double(), x)  # the per-datum FFG
    g = fam.make_amortized(model, hidden=16).double()
    with pytest.raises(ConfigError, match="set_training_size"):
        g.elbo(model, x, 2)
    g.set_training_size(100)
    out = g.elbo(model, x, 2)
    assert out.shape == (4,) and torch.isfinite(out).all()
    out.sum().backward()
    assert g.tril_raw.grad.abs().sum() > 0 and g.loc.grad.abs().sum() > 0
    assert torch.isfinite(g.tril_raw.grad).all() and torch.isfinite(g.loc.grad).all()
    with pytest.raises(ConfigError, match="init_std"):
        fam.make_amortized(model, init_std=0.0)


def test_families_command_lists_gpvae(capsys):
    assert main(["families"]) == 0
    line = next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("gpvae "))
    assert "amortized/per-datum" in line


def test_trains_through_the_cli_and_the_gap_report_keeps_the_uncertainty(tmp_path, capsys):
    """``vaegap train --guide gpvae`` on the 8×8 digits: the objective (eq. 15, the epoch mean over
    the 1197 training digits) improves from epoch 1 to epoch 4 by far more than its noise — each
    epoch mean averages 1197 one-sample estimates whose spread is a few nats, a standard error of
    ~0.1 nats, and the first epochs from a random initialization gain several nats. Then the gap
    report of the run: its amortization gap is measured against the per-datum FFG q*, and it keeps the
    guide's uncertainty(x) for each evaluated datapoint."""
    run = tmp_path / "run"
    assert main(["train", "--run-dir", str(run), "--dataset", "digits", "--guide", "gpvae", "--epochs", "4",
                 "--latent-dim", "3", "--hidden", "16", "--guide-options", '{"hidden": 16}', "--quiet"]) == 0
    with open(run / "log.csv") as fh:
        log = list(csv.DictReader(fh))
    first, last = float(log[0]["train_objective"]), float(log[-1]["train_objective"])
    assert last > first + 1.0, (first, last)
    assert all(math.isfinite(float(r["valid_elbo"])) for r in log)
    model, guide, cfg = load_run(run)
    init = get_family("gpvae").make_amortized(model, hidden=16)
    assert not torch.allclose(guide.tril_raw, init.tril_raw)  # q(W, U) was trained
    capsys.readouterr()
    assert main(["gaps", "--run", str(run), "--num-points", "4", "--iwae-samples", "50", "--elbo-samples", "50",
                 "--no-ais", "--local-samples", "3", "--local-max-steps", "40", "--local-check-every", "10",
                 "--local-init", "encoder", "--out", str(tmp_path / "rep"), "--quiet"]) == 0
    rep = json.loads((tmp_path / "rep.json").read_text())
    assert rep["family"] == "gpvae" and rep["approx_family"] == "ffg" and "local:ffg" in rep["per_point"]
    x = load_dataset("digits", "test")
    x = model.validate_data(x[seeded_subset(x.shape[0], 4, 0)])
    with torch.no_grad():
        expected = guide.uncertainty(x)
    assert torch.allclose(torch.tensor(rep["per_point"]["uncertainty"], dtype=torch.float64), expected.double(), rtol=1e-6)
    assert (expected > 0).all()
    assert "encoder uncertainty" in (tmp_path / "rep.md").read_text()
    with pytest.raises(ConfigError, match="trains with its own ELBO estimator"):
        from pyro_vaegap.train import TrainConfig, train
        train(TrainConfig(dataset="digits", guide="gpvae", objective="mean_field", epochs=1, latent_dim=2,
                          hidden=8, guide_options={"hidden": 8}), tmp_path / "r2", progress=False)
