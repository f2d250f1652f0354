"""Any Pyro model and guide, unchanged (issue 23): Pyro's tutorial VAE through the gap report, AIS, BDMC and every
family with no adapter; guides that miss a latent site refused before any computation; Pyro's autoguides as
per-datum families, checked against the linear-Gaussian closed forms."""
import math
import sys
import warnings
from pathlib import Path

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import SVI, Trace_ELBO
from pyro.infer.autoguide import AutoDelta, AutoMultivariateNormal, AutoNormal

from conftest import exact_elbo

EXAMPLES = Path(__file__).resolve().parents[1] / "docs" / "examples"
sys.path.insert(0, str(EXAMPLES))
from pyro_vae_tutorial import VAE  # noqa: E402  (Pyro's tutorial VAE, verbatim)
from pyro_vaegap import gaps as gaps_module
from pyro_vaegap.ais import ais, bdmc
from pyro_vaegap.contract import as_model, check_sites, inspect_model
from pyro_vaegap.estimators import importance_sample
from pyro_vaegap.gaps import GapConfig, gap_report
from pyro_vaegap.guide import Guide, LocalGuide
from pyro_vaegap.local import optimize_local
from pyro_vaegap.models import VAEModel
from pyro_vaegap.registry import families, get_family, register_family
from pyro_vaegap.traces import log_weights, simulate
from pyro_vaegap.utils import ConfigError

Z = 4.0  # standard errors allowed in a seeded statistical check
SMALL = dict(iwae_samples=200, elbo_samples=200, sample_chunk=100, ais_chains=16, ais_steps=500, ais_leapfrog=3,
             ais_pilot_chains=4, local_samples=16, local_lr=1e-2, local_max_steps=400, local_check_every=50,
             local_patience=2, data_chunk=4, ais_data_chunk=4, local_init="encoder")


def binary_images(n, seed=0):
    """``n`` 784-pixel binary images with structure: pixels driven by 4 latent factors."""
    g = torch.Generator().manual_seed(seed)
    A = 3 * torch.randn(4, 784, generator=g)
    z = torch.randn(n, 4, generator=g)
    return torch.bernoulli(torch.sigmoid(z @ A), generator=g)


@pytest.fixture(scope="module")
def trained_vae():
    """The tutorial's VAE trained as the tutorial trains it (SVI, Trace_ELBO, Adam), briefly, on small data."""
    pyro.clear_param_store()
    torch.manual_seed(0)
    vae = VAE(z_dim=4, hidden_dim=64)
    svi = SVI(vae.model, vae.guide, pyro.optim.Adam({"lr": 1e-2}), loss=Trace_ELBO())
    x = binary_images(64)
    for _ in range(100):
        svi.step(x)
    return vae, x


class TutorialModelLibraryStyle(VAEModel):
    """The same model written in the library's style (site "z", plate from data_plate), sharing the decoder."""

    def __init__(self, decoder, z_dim):
        super().__init__(z_dim, 784)
        self.decoder = decoder

    def likelihood(self, z):
        return dist.Bernoulli(self.decoder(z), validate_args=False).to_event(1)

    def validate_data(self, x):
        return x


class TutorialGuideLibraryStyle(Guide):
    def __init__(self, model, encoder):
        super().__init__(model)
        self.encoder = encoder

    def encode(self, x):
        return self.encoder(x)

    def forward(self, x, idx=None, num_data=None):
        loc, scale = self.encoder(x)
        with self.data_plate(x, idx, num_data):
            return self.sample_latents(dist.Normal(loc, scale).to_event(1))


def test_the_model_is_read_from_its_trace(trained_vae):
    vae, x = trained_vae
    spec = inspect_model(vae.model, x)
    assert spec.plate == "data" and spec.observed == ("obs",) and spec.names == ["latent"]
    assert spec.latents[0].event_shape == (4,) and spec.latent_dim == 4 and spec.data_dim == 784
    check_sites(spec, vae.guide, x[:3])  # the tutorial's own guide fits


def test_tutorial_vae_gap_report_no_adapter_matches_library_style(trained_vae):
    """Pyro's tutorial VAE, as written, through gap_report (AIS, encoder-initialized FFG and fullcov q*): every
    point has log p̂ ≥ L[q*] ≥ L[q] up to Z standard errors, and the report equals, number for number, the
    report of the same model written in the library's style (same networks, same seed) — except L[q*], whose
    optimization draws noise keyed by the site's name: those agree within Z standard errors plus 0.05 nats
    of optimization difference (both stop by the rule or the same step cap)."""
    vae, x = trained_vae
    xe = x[:8]
    cfg = GapConfig(families=("ffg", "fullcov"), **SMALL)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rep = gap_report(vae.model, vae.guide, xe, cfg, progress=False, log=None)
    flood = [w for w in caught if "requires_grad=False" in str(w.message)]
    assert not flood, f"{len(flood)} pyro.module warnings under the frozen decoder"
    p = {k: torch.as_tensor(v) for k, v in rep.per_point.items()}
    for f in ("ffg", "fullcov"):
        assert torch.all(p["log_px"] > p[f"local:{f}"] - Z * (p["ais_se"] + p[f"local_se:{f}"])), f
        assert torch.all(p[f"local:{f}"] > p["amortized"] - Z * torch.hypot(p[f"local_se:{f}"], p["amortized_se"])), f
    assert torch.all(p["local:ffg"] > -800) and torch.all(torch.isfinite(p["log_px"]))

    lib = TutorialModelLibraryStyle(vae.decoder, 4)
    ref = gap_report(lib, TutorialGuideLibraryStyle(lib, vae.encoder), xe, cfg, progress=False, log=None)
    q = {k: torch.as_tensor(v) for k, v in ref.per_point.items()}
    for k, v in q.items():
        if k.split(":")[0] in ("local", "local_se", "approximation", "amortization", "steps", "converged"):
            continue  # below: the local optimizers' keyed noise is keyed by site name ("latent" vs "z")
        assert torch.allclose(p[k], v, rtol=1e-4, atol=1e-3), k
    for f in ("ffg", "fullcov"):
        se = torch.hypot(p[f"local_se:{f}"], q[f"local_se:{f}"])
        assert torch.all((p[f"local:{f}"] - q[f"local:{f}"]).abs() < Z * se + 0.05), f


def test_tutorial_vae_through_ais_bdmc_and_every_family(trained_vae):
    vae, x = trained_vae
    xe = x[:3]
    torch.manual_seed(0)
    lw = log_weights(vae.model, vae.guide, xe, 50)
    assert lw.shape == (50, 3) and torch.isfinite(lw).all()
    a = ais(vae.model, xe, num_chains=8, num_steps=20, leapfrog_steps=2)
    assert torch.isfinite(a.log_px).all()
    res = bdmc(vae.model, 3, like=xe, num_chains=8, num_steps=100, leapfrog_steps=3)
    assert not bool(res.crossings_beyond_noise().any())
    model = as_model(vae.model, xe)
    spec = inspect_model(vae.model, xe)
    for name, fam in families().items():
        if fam.local is not None:
            local = fam.make_local(model, 3)
            check_sites(spec, local, xe, who=name)
            r = optimize_local(model, local, xe, num_samples=4, max_steps=3, check_every=1, patience=1)
            assert torch.isfinite(r.best_avg).all(), name
        if fam.amortized is not None and name == "vlae":  # Gaussian decoders only: a clear refusal here
            with pytest.raises(ConfigError, match="the vlae family needs a Gaussian likelihood"):
                fam.make_amortized(model)
        elif fam.amortized is not None:
            check_sites(spec, fam.make_amortized(model), xe, who=name)


def _no_estimator(*a, **k):
    raise AssertionError("an estimator ran before the guides were checked")


def test_a_guide_that_misses_a_latent_site_is_refused_before_any_computation(trained_vae, monkeypatch):
    vae, x = trained_vae
    monkeypatch.setattr(gaps_module, "importance_sample", _no_estimator)
    monkeypatch.setattr(gaps_module, "ais", _no_estimator)

    def guide_z(x):  # the site is called "z", the model's "latent"
        loc, scale = vae.encoder(x)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(loc, scale).to_event(1))

    with pytest.raises(ConfigError, match=r"the amortized guide does not sample the model's latent site\(s\) "
                                          r"\['latent'\] and samples \['z'\]"):
        gap_report(vae.model, guide_z, x[:4], GapConfig(**SMALL), progress=False, log=None)

    class HardCodedZ(LocalGuide):  # a per-datum family written for site "z" only
        def __init__(self, model, num_data):
            super().__init__(model, num_data)
            self.loc = torch.nn.Parameter(torch.zeros(num_data, self.latent_dim))

        def forward(self, x, idx=None, num_data=None):
            with self.data_plate(x, idx, num_data):
                pyro.sample("z", dist.Normal(self.loc[self.rows(x, idx)], 1.0).to_event(1))

    register_family("hard_coded_z", local=HardCodedZ)
    with pytest.raises(ConfigError, match=r"the per-datum guide of family 'hard_coded_z' does not sample"):
        gap_report(vae.model, vae.guide, x[:4], GapConfig(families=("hard_coded_z",), **SMALL), progress=False,
                   log=None)
    with pytest.raises(ConfigError, match=r"unknown guide family 'AUTONORMAL_UNREGISTERED'"):
        gap_report(vae.model, vae.guide, x[:4], GapConfig(**SMALL), family="AUTONORMAL_UNREGISTERED",
                   progress=False, log=None)


def _fit(model, guide, x, steps, lr=0.05):
    """Fit an autoguide's parameters (the model fixed) by the Monte Carlo ELBO, as SVI would."""
    guide(x)  # the autoguide's prototype trace: its parameters exist from here
    opt = torch.optim.Adam(guide.parameters(), lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        (-log_weights(model, guide, x, 10).mean(0).sum()).backward()
        opt.step()


def test_joint_and_point_mass_autoguides_are_refused_as_the_evaluated_guide(lg_model, lg_data):
    pyro.clear_param_store()
    for cls, reason in ((AutoMultivariateNormal, "outside the data plate"), (AutoDelta, "point masses")):
        g = cls(lg_model)
        g(lg_data)  # set up (fitting does not change its structure)
        with pytest.raises(ConfigError, match=reason):
            gap_report(lg_model, g, lg_data, GapConfig(**SMALL), progress=False, log=None)
    with pytest.raises(ConfigError, match="AutoDelta .MAP. is a point mass"):
        get_family("auto_delta")
    with pytest.raises(ConfigError, match="AutoDelta .MAP. is a point mass"):
        register_family("my_map", local=AutoDelta)
    fam = register_family("my_auto_normal", local=AutoNormal)  # Pyro's class: its per-datum version
    assert fam.local is get_family("auto_normal").local


def test_fitted_autonormal_is_the_amortized_guide_in_any_chunking(lg_model, lg_data):
    """A fitted AutoNormal holds one row per datapoint; evaluated in chunks of 3 (idx picks its rows), each
    point's L[q] matches the closed-form ELBO of that point's (loc, scale)."""
    pyro.clear_param_store()
    torch.manual_seed(0)
    g = AutoNormal(lg_model)
    _fit(lg_model, g, lg_data, 300)
    r = importance_sample(lg_model, g, lg_data, 4000, data_chunk=3, psis=False)
    loc, scale = g.locs.z.detach(), g.scales.z.detach()
    assert loc.shape == (lg_data.shape[0], 2)
    assert torch.all((r.elbo - exact_elbo(lg_model, lg_data, loc, scale)).abs() < Z * r.elbo_se)
    rep = gap_report(lg_model, g, lg_data, GapConfig(families=("auto_normal",),
                                                         **{**SMALL, "data_chunk": 3, "local_init": "prior"}),
                     family="ffg", progress=False, log=None)
    p = {k: torch.as_tensor(v) for k, v in rep.per_point.items()}
    assert torch.all((p["amortized"] - exact_elbo(lg_model, lg_data, loc, scale)).abs() < Z * p["amortized_se"])


@pytest.mark.parametrize("name,options,target", [("auto_normal", {}, "ffg"), ("auto_mvn", {}, "exact"),
                                                  ("auto_lowrank", {"rank": 2}, "exact"), ("auto_iaf", {}, "beats_ffg")])
def test_autoguide_families_against_closed_forms(lg_model, lg_data, name, options, target):
    """q* of each autoguide family on the linear-Gaussian model: AutoNormal's approximation gap is the FFG
    optimum's, 0.5 (Σ log Λ_ii − log det Λ); AutoMultivariateNormal's (and full-rank low-rank's) is 0; the
    IAF's lies between. Tolerances: Z standard errors of the 20000-sample ELBO plus 0.01 nats of
    optimization shortfall (Adam at lr 1e-2 jitters the parameters by O(lr); the ELBO is quadratic there)."""
    torch.manual_seed(0)
    g = get_family(name).make_local(lg_model, lg_data.shape[0], **options).double()
    optimize_local(lg_model, g, lg_data, num_samples=50, lr=1e-2, max_steps=4000, check_every=100, patience=5, seed=0)
    r = importance_sample(lg_model, g, lg_data, 20000, psis=False)
    gap = lg_model.exact_log_marginal(lg_data) - r.elbo
    ffg = float(lg_model.exact_ffg_gap())
    assert ffg > 0.1
    tol = Z * r.elbo_se + 0.01
    if target == "ffg":
        assert torch.all((gap - ffg).abs() < tol), (gap, ffg)
    elif target == "exact":
        assert torch.all(gap.abs() < tol), gap
    else:
        assert torch.all(gap > -Z * r.elbo_se) and torch.all(gap < ffg + tol), (gap, ffg)


def test_autonormal_family_with_a_positive_latent():
    """Sites are whatever the model draws: a positive (LogNormal) latent under AutoNormal's exp bijection and a
    real one, any names; the family's q* beats the prior and the guide passes the site check."""
    def model(x):
        with pyro.plate("points", x.shape[0]):
            s = pyro.sample("rate", dist.LogNormal(torch.zeros(x.shape[0]), 1.0))
            m = pyro.sample("shift", dist.Normal(torch.zeros(x.shape[0], 2), 1.0).to_event(1))
            pyro.sample("y", dist.Normal(m, s.unsqueeze(-1)).to_event(1), obs=x)

    torch.manual_seed(0)
    x = torch.randn(5, 2) * 2
    m = as_model(model, x)
    spec = inspect_model(model, x)
    assert spec.plate == "points" and spec.names == ["rate", "shift"] and spec.latent_dim == 3
    for name in ("auto_normal", "auto_mvn", "ffg"):
        g = get_family(name).make_local(m, 5)
        check_sites(spec, g, x, who=name)
        before = importance_sample(m, g, x, 500, psis=False).elbo
        optimize_local(m, g, x, num_samples=20, lr=2e-2, max_steps=600, check_every=100, patience=3, seed=0)
        after = importance_sample(m, g, x, 500, psis=False)
        assert torch.all(after.elbo > before), name
        iw = after.iwae
        assert torch.all(after.elbo < iw + Z * after.elbo_se), name


def test_frozen_pyro_module_says_nothing(trained_vae):
    vae, x = trained_vae
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ais(vae.model, x[:2], num_chains=4, num_steps=5, leapfrog_steps=2)
    assert not [w for w in caught if "requires_grad=False" in str(w.message)]


def test_a_model_with_a_global_latent_is_refused():
    def model(x):
        w = pyro.sample("w", dist.Normal(0.0, 1.0))
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(torch.zeros(x.shape[0]), 1.0))
            pyro.sample("x", dist.Normal(w + z, 1.0), obs=x[:, 0])

    with pytest.raises(ConfigError, match="latent site 'w' is outside the data plate 'data'"):
        inspect_model(model, torch.zeros(4, 1))


def test_simulated_data_of_a_user_model(trained_vae):
    vae, x = trained_vae
    xs, latents = simulate(vae.model, 5, x[:1])
    assert xs.shape == (5, 784) and set(latents) == {"latent"}
    assert math.isfinite(float(log_weights(vae.model, vae.guide, xs, 4).mean()))


def _fake_mnist(folder: Path) -> None:
    """``folder/binarized_mnist.npz``: 60/20/20 structured binary images in the shared file's packed format."""
    import numpy as np

    bits = binary_images(100, seed=1).to(torch.uint8).numpy()
    np.savez_compressed(folder / "binarized_mnist.npz", train=np.packbits(bits[:60], axis=1),
                        valid=np.packbits(bits[60:80], axis=1), test=np.packbits(bits[80:], axis=1))


QUICK_FLAGS = ["--families", "ffg,auto_normal", "--iwae-samples", "50", "--elbo-samples", "50", "--sample-chunk", "50",
               "--ais-chains", "4", "--ais-steps", "10", "--ais-leapfrog", "2", "--ais-pilot-chains", "2",
               "--local-samples", "4", "--local-max-steps", "20", "--local-check-every", "10", "--local-patience", "1",
               "--data-chunk", "4", "--ais-data-chunk", "4", "--local-init", "encoder"]


def test_bring_your_own_model_page_runs_and_the_cli_takes_the_model(tmp_path, capsys):
    """docs/byom.rst end to end: the example script trains Pyro's tutorial VAE and writes its gap table; then
    ``vaegap gaps --model docs/examples/pyro_vae_tutorial.py:VAE --checkpoint vae.pt`` evaluates the saved
    weights, with the same table rows."""
    from bring_your_own_model import main

    from pyro_vaegap import cli

    _fake_mnist(tmp_path)
    out = tmp_path / "out"
    rep = main(["--out", str(out), "--data-dir", str(tmp_path), "--epochs", "1", "--train-points", "60",
                "--num-points", "4", "--quick"])
    assert (out / "gaps.md").read_text().startswith("| | ours |") and (out / "vae.pt").exists()
    assert set(rep.local_families) == {"ffg", "auto_normal"}
    argv = ["gaps", "--model", f"{EXAMPLES / 'pyro_vae_tutorial.py'}:VAE", "--checkpoint", str(out / "vae.pt"),
            "--dataset", "binarized_mnist", "--data-dir", str(tmp_path), "--num-points", "4", "--out",
            str(tmp_path / "cli"), "--quiet", *QUICK_FLAGS]
    assert cli.main(argv) == 0
    cli_rep = gaps_module.GapReport.load(tmp_path / "cli.json")
    assert set(cli_rep.per_point) == set(rep.per_point)
    assert cli_rep.meta["user_model"].endswith("pyro_vae_tutorial.py:VAE")
    capsys.readouterr()
    # the command line's errors: one line, exit status 2
    for bad, message in (([], "give --run .* or --model MODULE:FUNCTION"),
                         (["--model", "no_colon"], "--model 'no_colon' is not allowed: expected MODULE:FUNCTION"),
                         (["--model", "no_such_module_xyz:build", "--dataset", "binarized_mnist", "--out", "o"],
                          "importing 'no_such_module_xyz' failed"),
                         (["--model", f"{EXAMPLES / 'pyro_vae_tutorial.py'}:VAE", "--out", "o"], "--model needs --dataset"),
                         (["--model", f"{EXAMPLES / 'pyro_vae_tutorial.py'}:VAE", "--dataset", "binarized_mnist",
                           "--data-dir", str(tmp_path), "--out", str(tmp_path / "o2"), "--checkpoint",
                           str(tmp_path / "binarized_mnist.npz")], "is not a file written by torch.save")):
        assert cli.main(["gaps", *bad]) == 2, bad
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and __import__("re").search(message, err[0]), (bad, err)
