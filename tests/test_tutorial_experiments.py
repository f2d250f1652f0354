"""Short-budget training reference on 8 Gaussians, and the tutorial experiments' command lines."""
import math
import os
import subprocess
import sys

import pytest
from pathlib import Path

from pyro_vaegap.experiments import (tutorial_bitsdim, tutorial_compression, tutorial_flow_limit, tutorial_mse,
                                     tutorial_toy2d)
from pyro_vaegap.data import load_dataset
from pyro_vaegap.estimators import importance_sample
from pyro_vaegap.train import TrainConfig, train
from pyro_vaegap.utils import set_seed

# Reference NLLs (bits) of the short 8-Gaussian runs below, each obtained by running exactly this
# test once (seed 0, torch 2.15 CPU, one thread; printed by the test). The same code and seed
# reproduce them to float rounding on one machine; the tolerance covers other BLAS/torch builds,
# whose rounding differences grow through the Adam steps into a different but equally trained model.
# 0.2 bits is 6-10x the standard error of the mean NLL of these 500 test points (0.02-0.033 bits) and
# well below the distance to the collapsed solution (one Gaussian that ignores z, NLL ~ +0.15 bits).
ROOT = Path(__file__).parents[1]
TOLERANCE_BITS = 0.2
SHORT_RUNS = {
    # plain ELU MLP, KL annealing, 1,000 steps: -0.5977 bits (0.75 bits from collapse)
    "anneal": (-0.5977, dict(hidden=64, guide_options={"hidden": 64}, epochs=10, lr=3e-3, anneal="kl",
                             anneal_epochs=3)),
    # the recipe of experiments.tutorial_toy2d (free bits, densely connected ReLU networks), 3,000 steps:
    # -1.1223 bits (1.27 bits from collapse; at 1,000 steps this recipe was still at +0.01 bits)
    "free_bits_dense": (-1.1223, dict(hidden=64, decoder_layers=3, activation="relu", dense=True,
                                      guide_options={"hidden": 64, "layers": 3, "activation": "relu", "dense": True},
                                      epochs=30, lr=1e-3, lr_schedule="cosine", free_bits=0.05)),
}


@pytest.mark.parametrize("recipe", list(SHORT_RUNS))
def test_short_8gaussians_training_reaches_reference_nll(tmp_path, recipe):
    reference, options = SHORT_RUNS[recipe]
    cfg = TrainConfig(dataset="8gaussians", num_train=10_000, model="gaussian", variance="network", latent_dim=2,
                      batch_size=100, seed=0, **options)
    res = train(cfg, tmp_path, progress=False)
    set_seed(0)
    x = load_dataset("8gaussians", "test")[:500]
    nll = -float(importance_sample(res.model, res.guide, x, 100, psis=False).iwae.mean()) / math.log(2)
    print("NLL bits", nll)
    assert abs(nll - reference) < TOLERANCE_BITS


@pytest.mark.parametrize("module,argv,message", [
    (tutorial_toy2d, ["--epochs", "0"], "--epochs=0"),
    (tutorial_toy2d, ["--datasets", "moons"], "invalid choice"),
    (tutorial_toy2d, ["--num-test", "6000"], "exceed"),
    (tutorial_toy2d, ["--workers", "0"], "--workers=0"),
    (tutorial_toy2d, ["--free-bits", "-0.1"], "--free-bits=-0.1"),
    (tutorial_toy2d, ["--quad-cells", "100"], "multiple of 48"),
    (tutorial_toy2d, ["--test-set-check", str(ROOT / "docs/results/tutorial_flow_limit/results.json")], "not a results file"),
    (tutorial_toy2d, ["--test-set-check", "nowhere.json"], "cannot be read"),
    (tutorial_toy2d, ["--profile", "huge"], "invalid choice"),
    (tutorial_mse, ["--toy-epochs", "-1"], "--toy-epochs=-1"),
    (tutorial_mse, ["--num-test", "301"], "300 test images"),
    (tutorial_bitsdim, ["--dataset", "svhn"], "invalid choice"),
    (tutorial_bitsdim, ["--lr", "0"], "--lr=0"),
    (tutorial_compression, ["--latent-bits", "40"], "at most 20"),
    (tutorial_compression, ["--seed", "-2"], "--seed=-2"),
])
def test_cli_rejects_bad_options(module, argv, message, capsys, tmp_path):
    with pytest.raises(SystemExit) as e:
        module.main(argv + ["--out", str(tmp_path)])
    assert e.value.code == 2
    assert message in capsys.readouterr().err


def test_cli_help_and_exit_status():
    r = subprocess.run([sys.executable, "-m", "pyro_vaegap.experiments.tutorial_compression", "--help"],
                       capture_output=True, text=True)
    assert r.returncode == 0 and "--latent-bits" in r.stdout and "--run" in r.stdout
    r = subprocess.run([sys.executable, "-m", "pyro_vaegap.experiments.tutorial_compression", "--run", "/nonexistent"],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "tutorial_compression: error:" in r.stderr and "no checkpoint.pt" in r.stderr


def test_bitsdim_on_fake_cifar(tmp_path, monkeypatch):
    """The CIFAR-10 path end to end on tiny fake torchvision files (tests/test_tutorial_data.py)."""
    import torchvision.datasets.cifar

    from pyro_vaegap import data
    from test_tutorial_data import _fake_cifar  # tests/ is on sys.path under pytest

    _fake_cifar(tmp_path / "data")
    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity", lambda path, md5=None: os.path.isfile(path))
    monkeypatch.setattr(data, "CIFAR10_VALID_SIZE", 5)
    res = tutorial_bitsdim.main(["--dataset", "cifar10", "--data-dir", str(tmp_path / "data"), "--epochs", "1",
                                 "--latent-dim", "2", "--hidden", "8", "--eval-samples", "4", "--num-test", "3",
                                 "--out", str(tmp_path / "out"), "--quiet"])
    bpd = res["cifar10"]["nll_bits_per_dim"]
    assert 0 < bpd < 20 and (tmp_path / "out" / "results.json").is_file()


def test_mse_main_tiny_budget(tmp_path):
    """The whole MSE experiment end to end on a tiny budget (it once crashed formatting σ² of the
    models without a shared learned variance); every variant reports, and only ``scalar`` learns σ²."""
    res = tutorial_mse.main(["--toy-epochs", "1", "--toy-num-train", "200", "--toy-hidden", "8", "--toy-layers", "2",
                             "--digits-epochs", "1", "--hidden", "8",
                             "--eval-samples", "4", "--num-test", "10", "--out", str(tmp_path), "--quiet"])
    for ds in ("8gaussians", "digits_continuous"):
        assert set(res[ds]) == set(tutorial_mse.VARIANTS)
        assert res[ds]["mse"]["sigma2"] == 0.5 and res[ds]["network"]["sigma2"] is None
        assert res[ds]["scalar"]["sigma2"] > 0 and math.isfinite(res[ds]["scalar"]["nll_nats"])
    assert (tmp_path / "results.md").is_file() and (tmp_path / "reconstructions_digits_continuous.png").is_file()


def test_toy2d_main_tiny_budget(tmp_path):
    """The toy experiment end to end (training, evaluation, density maps, latent figures) on a tiny
    budget, in 2 worker processes and again in 1: every job seeds itself, so the numbers are equal."""
    argv = ["--quick", "--datasets", "8gaussians", "--quiet"]
    res = tutorial_toy2d.main(argv + ["--out", str(tmp_path / "two"), "--workers", "2"])
    one = tutorial_toy2d.main(argv + ["--out", str(tmp_path / "one"), "--workers", "1"])
    keys = ("nll_bits", "neg_elbo_bits", "train_bound_bits", "nll_quad_bits", "nll_quad_bits_24")
    for objective in ("elbo", "iwae"):
        r, r1 = res["8gaussians"][objective], one["8gaussians"][objective]
        assert all(math.isfinite(r[k]) for k in keys) and r["quad_mass"] > 0.999
        assert all(r[k] == r1[k] for k in keys)
        assert not r["reused_training"] and r["training"]["epochs"] == 1
    for name in ("results.json", "results.md", "density_maps.png", "latent_elbo.png", "latent_iwae.png"):
        assert (tmp_path / "two" / name).is_file()
    # a second call reuses the finished runs, says so, and gives the same numbers
    again = tutorial_toy2d.main(argv + ["--out", str(tmp_path / "one"), "--workers", "1", "--objectives", "elbo"])
    assert again["8gaussians"]["elbo"]["reused_training"] and set(again["8gaussians"]) >= {"elbo"}
    assert "iwae" not in again["8gaussians"]
    assert all(again["8gaussians"]["elbo"][k] == one["8gaussians"]["elbo"][k] for k in keys)
    assert "reused the finished training runs 8gaussians_elbo" in (tmp_path / "one" / "results.md").read_text()
    # --test-set-check corrects the file's mean NLLs by the test sample's deviation from H: the same number as
    # the run's own paired estimate (computed per point, another code path; the file's mean is a float32 mean,
    # hence agreement to float32 rounding, ~1e-7 relative, not float64)
    chk = tutorial_toy2d.main(argv + ["--test-set-check", str(tmp_path / "two" / "results.json"),
                                      "--out", str(tmp_path / "check")])
    ref = chk["reference"]["8gaussians"]
    assert abs(ref["entropy_quad_bits"] - res["8gaussians"]["reference"]["entropy_quad_bits"]) < 1e-12
    for objective in ("elbo", "iwae"):
        c = chk["files"][str(tmp_path / "two" / "results.json")][f"8gaussians/{objective}"]
        assert abs(c["nll_corrected_bits"] - res["8gaussians"][objective]["nll_cv_bits"]) < 1e-5


def test_toy2d_profiles_and_paper_numbers():
    """The profiles set the budget (an option given overrides it); the tutorial's numbers come from papers."""
    parse = lambda *a: tutorial_toy2d.PROFILES.apply(tutorial_toy2d.build_parser().parse_args(list(a)))  # noqa: E731
    assert parse()["epochs"] == 120 and parse()["iwae_epochs"] == 30
    assert parse("--profile", "long")["epochs"] == 360 and parse("--profile", "long")["iwae_epochs"] == 90
    assert parse("--profile", "long", "--epochs", "480")["epochs"] == 480
    assert parse("--quick")["num_train"] == 300
    # Table 1 (VAE: loss = -ELBO) and Table 2 (IWAE: loss = -L_10) of the tutorial, as printed
    assert tutorial_toy2d.paper_numbers("2spirals", "elbo") == (-1.99, -2.15)
    assert tutorial_toy2d.paper_numbers("checkerboard", "iwae") == (-0.81, -0.87)
    assert tutorial_toy2d.paper_entropy("checkerboard") == "−1"  # printed with a minus sign


@pytest.mark.parametrize("name,cells,tol", [("8gaussians", 72, 1e-5), ("checkerboard", 48, 1e-12)])
def test_toy_quadrature_recovers_the_entropy(name, cells, tol):
    """The midpoint rule weighted by the true density, applied to -log2 p itself, gives H: exactly for the
    checkerboard (p constant on every cell: cell edges on its edges), to the dropped tail mass (1e-7 of the
    mass, times |log p| ~ 20) for 8 Gaussians, whose H is known to 1e-6 bits."""
    from pyro_vaegap.data import TOY_ENTROPY_BITS, toy_log_density, toy_quadrature

    nodes, weights, mass = toy_quadrature(name, cells)
    assert abs(mass - 1) < 1e-6
    h = -(weights * toy_log_density(name, nodes)).sum() / weights.sum() / math.log(2)
    assert abs(h - TOY_ENTROPY_BITS[name]) < tol


def test_toy_quadrature_bad_cells():
    from pyro_vaegap.data import DataError, toy_quadrature

    with pytest.raises(DataError, match="multiple of 24"):
        toy_quadrature("8gaussians", 100)

def test_flow_limit_figure_redrawn_from_results_with_matching_colours(tmp_path):
    """--figure-only redraws the §3.3 figure from a results file (the committed one), and each flow's fitted line
    has the colour of that flow's points (it used to take the next colour of the cycle: the other flow's)."""
    import json
    import shutil
    from pathlib import Path

    import matplotlib.colors as mcolors

    src = Path(__file__).parents[1] / "docs" / "results" / "tutorial_flow_limit" / "results.json"
    shutil.copy(src, tmp_path / "results.json")
    assert tutorial_flow_limit.main(["--figure-only", "--out", str(tmp_path), "--quiet"]) is None
    assert (tmp_path / "flow_limit.png").stat().st_size > 0
    res = json.loads(src.read_text())["results"]
    fits = {n: (f["fitted_order"], f["fitted_order_se"], f["fitted_constant"]) for n, f in res["flows"].items()}
    fig = tutorial_flow_limit.figure(res["flows"], fits, res["affine_exact_gap"],
                                     {n: f["fit_eps_max"] for n, f in res["flows"].items()})
    ax = fig.axes[0]
    points = [c.lines[0] for c in ax.containers]  # one errorbar per flow, in the order of res["flows"]
    fitted = [ln for ln in ax.lines if ln.get_linestyle() == "-" and ln not in points]
    assert len(points) == len(fitted) == 2
    for p, f in zip(points, fitted):
        assert mcolors.to_hex(p.get_color()) == mcolors.to_hex(f.get_color())
    assert mcolors.to_hex(points[0].get_color()) != mcolors.to_hex(points[1].get_color())


def test_flow_limit_figure_only_needs_a_results_file(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        tutorial_flow_limit.main(["--figure-only", "--out", str(tmp_path / "none")])
    assert e.value.code == 2 and "results.json" in capsys.readouterr().err
