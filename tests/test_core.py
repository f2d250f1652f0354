"""Models, the guide contract and registry, the trace plumbing, and the gap report end to end."""
import json
import sys

import numpy as np
import pytest
import torch

from conftest import exact_elbo, grid_log_px

from pyro_vaegap.guides.ffg import FFGEncoder, LocalFFG
from pyro_vaegap.ais import ais
from pyro_vaegap.data import DataError
from pyro_vaegap.estimators import importance_sample
from pyro_vaegap.gaps import GapConfig, gap_report
from pyro_vaegap.guide import check_guide
from pyro_vaegap.registry import get_family
from pyro_vaegap.local import optimize_local
from pyro_vaegap.models import BernoulliLogits, BernoulliVAE, DenseMLP, GaussianVAE, mlp
from pyro_vaegap.utils import ConfigError

Z = 4.0


def test_fused_bernoulli_equals_torch():
    logits = torch.randn(3, 4, 30) * 8
    x = (torch.rand(4, 30) < 0.5).float()
    ref = torch.distributions.Bernoulli(logits=logits).log_prob(x)
    assert torch.allclose(BernoulliLogits(logits=logits).log_prob(x), ref, atol=1e-5)


def test_models_reject_bad_data():
    m = BernoulliVAE(10, 2, 8)
    with pytest.raises(DataError, match="not 0 or 1"):
        m.validate_data(torch.full((3, 10), 0.5))
    with pytest.raises(ConfigError, match=r"expects \(N, 10\)"):
        m.validate_data(torch.zeros(3, 9))
    with pytest.raises(DataError):
        GaussianVAE(4).validate_data(torch.tensor([[0.0, float("nan"), 0.0, 0.0]]))
    with pytest.raises(ConfigError, match="decoder_layers"):
        BernoulliVAE(10, 2, 8, decoder_layers=-1)
    with pytest.raises(ConfigError, match="activation"):
        BernoulliVAE(10, 2, 8, activation="gelu2")


@pytest.mark.parametrize("layers", [0, 2, 4])
def test_decoder_depths(layers):
    m = BernoulliVAE(784, 50, 200, decoder_layers=layers)
    linears = [mod for mod in m.decoder if isinstance(mod, torch.nn.Linear)]
    assert len(linears) == layers + 1


def test_dense_mlp_connectivity():
    """Each layer of a DenseMLP reads the input and all earlier outputs: with the hidden layers'
    weights zeroed, the input still reaches the output through the output layer's first columns."""
    net = mlp([2, 8, 8, 3], "relu", dense=True)
    assert isinstance(net, DenseMLP) and [l[0].in_features for l in net.hidden] == [2, 10]
    assert net.out.in_features == 2 + 8 + 8
    with torch.no_grad():
        for layer in net.hidden:
            layer[0].weight.zero_(), layer[0].bias.zero_()
    x = torch.randn(5, 2)
    assert torch.allclose(net(x), x @ net.out.weight[:, :2].T + net.out.bias)
    body = mlp([2, 8, 8], "relu", final_activation=True, dense=True)
    assert body(x).shape == (5, 8) and (body(x) >= 0).all()


def test_ffg_guides_follow_the_contract():
    m = BernoulliVAE(12, 3, 8)
    x = (torch.rand(5, 12) < 0.5).float()
    check_guide(m, FFGEncoder(m, hidden=8), x)
    check_guide(m, FFGEncoder(m, hidden=8, layers=3, dense=True), x)
    check_guide(m, LocalFFG(m, 5), x)
    check_guide(BernoulliVAE(12, 3, 8, dense=True), FFGEncoder(m, hidden=8), x)


def test_estimators_match_grid_integration_on_a_nonlinear_model():
    """A Bernoulli decoder with a 2-d latent: the posterior is non-Gaussian, log p(x) comes from a grid."""
    torch.manual_seed(5)
    model = BernoulliVAE(16, 2, 16, decoder_layers=2).double()
    with torch.no_grad():
        for p in model.decoder.parameters():
            p.mul_(2.0)  # sharper, more non-Gaussian posteriors
    x = torch.distributions.Bernoulli(logits=model.decoder(torch.randn(6, 2, dtype=torch.float64))).sample()
    exact = grid_log_px(model, x)
    g = LocalFFG(model, 6).double()
    optimize_local(model, g, x, num_samples=50, lr=1e-2, max_steps=1500)
    r = importance_sample(model, g, x, 20_000)
    assert torch.all((r.iwae - exact).abs() < Z * r.iwae_se + 2e-3), (r.iwae - exact, r.iwae_se)
    assert torch.all(r.elbo < exact)
    a = ais(model, x, num_chains=100, num_steps=300, leapfrog_steps=5, init_step_size=0.1)
    se = ((100 / a.ess - 1).clamp(min=0) / 99).sqrt()
    assert torch.all((a.log_px - exact).abs() < Z * se + 2e-3), (a.log_px - exact, se)


def test_gap_report_on_linear_gaussian(lg_model, lg_data, tmp_path):
    """Per datapoint, every row of the report against its closed form: L[q] of the (untrained)
    encoder's Gaussian, log p̂ (AIS) against log p(x), the FFG approximation gap against the analytic
    one, the inference gap against log p(x) − L[q]. The saved JSON records the git commit and
    re-renders the same table."""
    from pyro_vaegap.gaps import GapReport

    torch.manual_seed(0)
    enc = FFGEncoder(lg_model, hidden=8).double()  # an untrained encoder: a clearly positive amortization gap
    cfg = GapConfig(iwae_samples=5000, elbo_samples=20_000, ais_chains=50, ais_steps=200, ais_leapfrog=5,
                    local_samples=100, local_lr=1e-2, local_max_steps=3000, local_patience=5)
    rep = gap_report(lg_model, enc, lg_data, cfg, progress=False, log=None)
    p = {k: torch.as_tensor(v) for k, v in rep.per_point.items()}
    exact = lg_model.exact_log_marginal(lg_data)
    with torch.no_grad():
        loc, scale = enc.encode(lg_data)
    elbo_q = exact_elbo(lg_model, lg_data, loc, scale)
    assert rep.log_px_estimator == "ais" and torch.equal(p["log_px"], p["ais"])
    assert torch.all((p["log_px"] - exact).abs() < Z * p["ais_se"] + 1e-3)
    assert torch.all((p["amortized"] - elbo_q).abs() < Z * p["amortized_se"])
    # log p̂ error (≤ 4 AIS s.e.) + L[q*] MC error + 0.01 nats of optimization slack (test_linear_gaussian)
    exact_gap = float(lg_model.exact_ffg_gap())
    tol = Z * torch.hypot(p["ais_se"], p["local_se:ffg"]) + 0.01 + 1e-3
    assert torch.all((p["approximation:ffg"] - exact_gap).abs() < tol), (p["approximation:ffg"], exact_gap)
    assert torch.all((p["inference"] - (exact - elbo_q)).abs() < Z * torch.hypot(p["ais_se"], p["amortized_se"]) + 1e-3)
    json_path, md_path = rep.save(tmp_path / "rep")
    saved = json.loads(json_path.read_text())
    assert saved["config"]["seed"] == 0 and saved["meta"]["versions"]["pyro-ppl"] != "not installed"
    assert len(saved["meta"]["git"]["commit"]) == 40 and isinstance(saved["meta"]["git"]["dirty"], bool)
    assert GapReport.load(json_path).to_markdown() == md_path.read_text()


def _synthetic_report(estimator, approx_family="ffg", families=("ffg", "flow"), split="train"):
    from pyro_vaegap.gaps import GapReport

    per = {"log_px": [-90.0, -88.0], "iwae": [-91.0, -89.0], "amortized": [-93.0, -91.0], "amortized_se": [0.1, 0.1],
           "inference": [3.0, 3.0]}
    for f in families:
        per.update({f"local:{f}": [-92.0, -90.0], f"local_se:{f}": [0.1, 0.1], f"steps:{f}": [100, 200],
                    f"converged:{f}": [1, 1], f"approximation:{f}": [2.0, 2.0], f"amortization:{f}": [1.0, 1.0]})
    cfg = GapConfig(families=families, ais=estimator != "iwae").to_dict()
    return GapReport(family=approx_family, approx_family=approx_family,
                     per_point={k: torch.tensor(v, dtype=torch.float64).numpy() for k, v in per.items()},
                     config=cfg, meta={"log_px_estimator": estimator, "paper": "cremer2018_table2_mnist_ffg",
                                       "evaluation_split": split})


def test_paper_numbers_pair_only_with_the_same_quantity():
    """The paper's FFG gaps pair with our FFG gaps, never with a flow's; log p̂ and everything derived
    from it pair only when our log p̂ uses AIS, as the paper's does."""
    def row(md, label):
        return next(line for line in md.splitlines() if line.startswith(f"| {label}"))

    md = _synthetic_report("ais").to_markdown()
    assert "| -89.80 |" in row(md, "log p̂(x)") and "| 1.43 |" in row(md, "Approximation gap (log p̂ − L[q*_FFG])")
    assert "– | – |" in row(md, "Approximation gap (log p̂ − L[q*_FLOW])")
    assert "| -90.80 |" in row(md, "L[q*_FLOW]")
    md = _synthetic_report("iwae").to_markdown()
    for label in ("log p̂(x)", "Approximation gap (log p̂ − L[q*_FFG])", "Inference gap"):
        assert "– | – |" in row(md, label), label
    assert "| 1.34 |" in row(md, "Amortization gap (L[q*_FFG] − L[q])") and "not compared" in md
    md = _synthetic_report("ais", approx_family="flow", families=("flow",)).to_markdown()
    assert "– | – |" in row(md, "Approximation gap (log p̂ − L[q*_FLOW])")
    md = _synthetic_report("max").to_markdown()
    assert "biased upward" in md


def test_paper_numbers_are_subtracted_only_on_the_papers_points():
    """Cremer et al.'s gaps are on training images: a report on test points shows the paper's column
    beside ours but subtracts nothing and says why; a report that recorded only the words of its points
    (written before the split was recorded) is read the same way; training points get the difference."""
    def row(md, label):
        return next(line for line in md.splitlines() if line.startswith(f"| {label}"))

    label = "Amortization gap (L[q*_FFG] − L[q])"
    md = _synthetic_report("ais", split="test").to_markdown()
    assert md.splitlines()[0] == "| | ours | paper (other points) |"
    assert row(md, label).endswith("| 1.00 ± 0.00 | 1.34 |") and "not subtracted" in md
    rep = _synthetic_report("ais", split="test")
    del rep.meta["evaluation_split"]
    rep.meta["evaluation_points"] = "100 test points (a random subset, seed 0)"
    md = rep.to_markdown()
    assert "ours − paper" not in md and "N = 2: 100 test points (a random subset, seed 0)" in md
    rep.meta["evaluation_points"] = "the first 1000 training points"
    assert row(rep.to_markdown(), label).endswith("| 1.34 | -0.34 |")


def test_cross_family_rows_are_not_called_amortization_gaps():
    """L[q*_FLOW] − L[q] of an FFG encoder mixes the amortization gap with the families' difference: the
    table labels it as cross-family and splits off L[q*_FLOW] − L[q*_FFG] (paired, per datapoint); and the
    settings line gives the draws IWAE and L[q] really use, max(iwae_samples, elbo_samples)."""
    from pyro_vaegap.gaps import GapReport

    def row(md, label):
        return next(line for line in md.splitlines() if line.startswith(f"| {label}"))

    rep = _synthetic_report("ais")
    rep.per_point["local:flow"] = np.array([-91.0, -88.5])
    rep.per_point["amortization:flow"] = rep.per_point["local:flow"] - rep.per_point["amortized"]
    rep.config.update(iwae_samples=100, elbo_samples=3000)
    md = rep.to_markdown()
    assert not any(line.startswith("| Amortization gap (L[q*_FLOW]") for line in md.splitlines())
    assert "2.25 ± 0.25 |" in row(md, "L[q*_FLOW] − L[q] (cross-family: FLOW optimum vs FFG encoder; not an amortization gap)")
    assert "1.25 ± 0.25 |" in row(md, "of which family difference L[q*_FLOW] − L[q*_FFG]")  # (1.0 + 1.5) / 2
    assert "1.00 ± 0.00 | 1.34 |" in row(md, "Amortization gap (L[q*_FFG] − L[q])")
    assert "IWAE and L[q] with k = 3000 samples" in md and "IS ESS of q (of 3000)" not in md  # no ESS here
    assert "IWAE k = 100" not in md
    assert GapReport.from_dict(json.loads(json.dumps(rep.to_dict()))).to_markdown() == md
    # an FFG encoder whose q* was computed only for the flow: the headline difference is cross-family too
    rep = _synthetic_report("ais", approx_family="flow", families=("flow",))
    rep.family = "ffg"
    md = rep.to_markdown()
    assert "not an amortization gap" in md and "Amortization gap" not in md and "family difference" not in md


def test_psis_khat_is_undefined_below_its_minimum_and_one_draw_works(lg_model, lg_data):
    """ArviZ's PSIS fits the Pareto tail only to more than 4 of the largest weights (S ≥ 21); with fewer
    draws k̂ is undefined (NaN, null in JSON, "undefined" in the table), never a traceback or a false inf;
    and one draw per point (IWAE-1 = L[q]) gives a whole report."""
    from pyro_vaegap.estimators import PSIS_MIN_SAMPLES

    enc = FFGEncoder(lg_model, hidden=4).double()
    assert PSIS_MIN_SAMPLES == 21
    for S, defined in ((1, False), (20, False), (21, True)):
        khat = importance_sample(lg_model, enc, lg_data, S).khat
        assert bool(torch.isfinite(khat).all()) == defined and (defined or bool(torch.isnan(khat).all())), (S, khat)
    cfg = GapConfig(iwae_samples=1, elbo_samples=1, ais=False, local_max_steps=20, local_check_every=10)
    rep = gap_report(lg_model, enc, lg_data, cfg, progress=False, log=None)
    assert np.isnan(rep.per_point["psis_khat"]).all() and np.allclose(rep.per_point["iwae"], rep.per_point["amortized"])
    md = rep.to_markdown()
    assert "PSIS k̂ of q's weights: undefined (PSIS needs at least 21 draws; 1 were drawn)" in md
    assert "k̂ > 0.7" not in md
    assert rep.to_dict()["summary"]["psis_khat"] == {"mean": None, "se": None}


def test_gap_config_rejects_bad_values():
    with pytest.raises(ConfigError, match="families is empty"):
        GapConfig(families=())
    with pytest.raises(ConfigError, match="names ffg more than once"):
        GapConfig(families=("ffg", "flow", "ffg"))
    with pytest.raises(ConfigError, match="ais_chains=0"):
        GapConfig(ais_chains=0)
    with pytest.raises(ConfigError, match="local_init='encoderr'"):
        GapConfig(local_init="encoderr")
