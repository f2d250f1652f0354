"""The GPVAE experiments (``experiments.gpvae_*``) on tiny ``--quick`` settings, and the grid integration
(:mod:`pyro_vaegap.grid`) they rely on, against closed forms and the traced model."""
import json
import math

import pytest
import torch

from pyro_vaegap.experiments import gpvae_gaps, gpvae_inference_time, gpvae_uncertainty
from pyro_vaegap.gaps import GapReport
from pyro_vaegap.grid import grid_log_px, grid_posterior
from pyro_vaegap.models import BernoulliVAE, LinearGaussian
from pyro_vaegap.traces import log_joint_parts, simulate
from pyro_vaegap.utils import ConfigError


def test_grid_posterior_matches_the_linear_gaussian_closed_forms():
    """log p(x), the posterior mean and covariance of a 2-d linear-Gaussian model, exactly known."""
    model = LinearGaussian.random(6, 2, scale=0.8, seed=0)
    x, _ = simulate(model, 4, torch.zeros(1, 6, dtype=torch.float64))
    g = grid_posterior(model, x, lim=7.0, n=301, chunk=5000)
    post = model.exact_posterior(x)
    assert torch.allclose(g.log_px, model.exact_log_marginal(x), atol=1e-9)
    assert torch.allclose(g.mean, post.mean, atol=1e-9)
    assert torch.allclose(g.cov, post.covariance_matrix, atol=1e-9)
    assert (g.edge_mass < 1e-12).all() and (g.min_std > 0.3).all()
    assert torch.allclose(grid_log_px(model, x, 7.0, 301), g.log_px, rtol=0, atol=1e-12)  # other chunks: rounding


def test_pairwise_bernoulli_likelihood_and_grid_equal_the_traced_model():
    """BernoulliVAE.pairwise_log_likelihood (one matrix product) is the traced likelihood of every pair, so
    the grid's fast path gives what tracing gives; the kept table is log p(x, z) on the grid."""
    torch.manual_seed(0)
    model = BernoulliVAE(16, 2, 16).double()
    x = torch.bernoulli(torch.full((5, 16), 0.4, dtype=torch.float64))
    z = torch.randn(7, 2, dtype=torch.float64)
    _, traced = log_joint_parts(model, x, {"z": z[:, None, :].expand(-1, 5, -1)})
    assert torch.allclose(model.pairwise_log_likelihood(z, x), traced, atol=1e-10)
    fast = grid_posterior(model, x, lim=4.0, n=41, keep=[2])

    class Traced(torch.nn.Module):  # the same model without the fast path
        latent_dim = 2

        def __init__(self, m):
            super().__init__()
            self.m = m

        def prior(self, like):
            return self.m.prior(like)

        def forward(self, *a, **k):
            return self.m(*a, **k)

    slow = grid_posterior(Traced(model), x, lim=4.0, n=41, chunk=100)
    assert torch.allclose(fast.log_px, slow.log_px, atol=1e-10) and torch.allclose(fast.cov, slow.cov, atol=1e-10)
    zz = torch.tensor([[fast.axis[3], fast.axis[7]]], dtype=torch.float64)
    lp, ll = log_joint_parts(model, x[2:3], {"z": zz[:, None, :]})
    assert torch.allclose(fast.log_joint[2][3, 7], (lp + ll)[0, 0], atol=1e-10)


def test_inference_time_quick(tmp_path, mnist_dir):
    """Every row of Table 5 is timed; the paper's ms (Table 5's MNIST column, typed here from the paper's text:
    SA(8) 60.8, IAF(1) 4.8) and ratio stand beside every row the paper has, and not beside ours alone (eq. 13
    recomputed per call)."""
    res = gpvae_inference_time.main(["--quick", "--data-dir", str(mnist_dir), "--out", str(tmp_path), "--quiet"])
    v = res["variants"]
    assert {"VAE", "SA(1)", "SA(8)", "IAF(1)", "IAF(8)", "GPVAE"} <= set(v) and len(v) == 11
    assert v["VAE"]["ratio_to_vae"] == 1.0 and all(r["median_ms"] > 0 for r in v.values())
    assert v["GPVAE"]["paper_ms"] == 9.9 and v["GPVAE"]["paper_ratio"] == pytest.approx(2.75)
    assert v["SA(8)"]["paper_ms"] == 60.8 and v["IAF(1)"]["paper_ms"] == 4.8
    assert [k for k, r in v.items() if r["paper_ms"] is None] == ["GPVAE, eq. 13 per call"]
    md = (tmp_path / "results.md").read_text()
    assert "| 9.9 | 2.75x |" in md and "| – | – |" in md and (tmp_path / "inference_time.png").is_file()
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["git"]["commit"] and saved["config"]["quick"] and saved["results"]["batch"] == 16


def test_inference_time_table11_rows_and_paper_values(tmp_path, mnist_dir):
    """--profile table11: VLAE(1, 2, 4, 8) and GPVAE (and the VAE) on a fully connected Gaussian decoder, each row
    beside the supplement's Table 11 entry of its dim z (MNIST, fully connected decoder) from papers."""
    from pyro_vaegap.report import papers

    res = gpvae_inference_time.main(["--profile", "table11", "--batch", "4", "--rounds", "1", "--repeats", "1",
                                     "--data-dir", str(mnist_dir), "--out", str(tmp_path), "--quiet"])
    assert list(res["variants"]) == ["VAE", "VLAE(1)", "VLAE(2)", "VLAE(4)", "VLAE(8)", "GPVAE"]
    for name, r in res["variants"].items():
        assert r["median_ms"] > 0
        want = None if name == "VAE" else papers.value("kim2021", "11", name, "mnist/dim_z=10/fc")
        assert r["paper_ms"] == want
    assert res["variants"]["GPVAE"]["ratio_to_gpvae"] == 1.0


def test_uncertainty_quick(tmp_path, mnist_dir):
    """The whole pipeline: training, grid, gap report, correlations with p-values, both figures."""
    res = gpvae_uncertainty.main(["--quick", "--data-dir", str(mnist_dir), "--out", str(tmp_path), "--quiet"])
    n = gpvae_uncertainty.PROFILES["quick"]["num_points"]
    for key in ("approximation", "amortization", "inference", "log_px"):
        c = res["spearman"][key]
        assert -1 <= c["rho"] <= 1 and 0 < c["p_permutation"] <= 1 and c["ci95"][0] <= c["ci95"][1]
    pp = res["per_point"]
    assert len(pp["uncertainty"]) == n and all(u > 0 for u in pp["uncertainty"])
    assert all(math.isfinite(v) for v in pp["log_px_grid"] + pp["local_ffg"])
    assert len(res["examples"]) == gpvae_uncertainty.NUM_EXAMPLES
    u = [pp["uncertainty"][i] for i in res["examples"]]
    assert u == sorted(u) and u[0] == min(pp["uncertainty"]) and u[-1] == max(pp["uncertainty"])
    for name in ("results.json", "results.md", "uncertainty_examples.png", "uncertainty_vs_gap.png"):
        assert (tmp_path / name).is_file()
    assert not (tmp_path / "gaps.partial").exists()
    assert (tmp_path / "runs" / "gpvae_z2_quick" / "checkpoint.pt").is_file()


def test_gaps_quick_and_resume(tmp_path, mnist_dir):
    """Three models, one gap report each (rendering to its markdown), paired differences; a rerun reuses the
    trained runs and the finished reports and gives the same table, and refuses reports of other settings."""
    argv = ["--quick", "--data-dir", str(mnist_dir), "--out", str(tmp_path), "--quiet"]
    res = gpvae_gaps.main(argv)
    assert list(res["models"]) == ["VAE", "SA(2)", "GPVAE"]
    for name, stem in (("VAE", "gaps_VAE"), ("SA(2)", "gaps_SA2"), ("GPVAE", "gaps_GPVAE")):
        r = res["models"][name]
        assert all(math.isfinite(r[k][0]) for k in ("log_px", "local_ffg", "amortized", "amortization_gap"))
        assert r["training"]["median_epoch_seconds"] > 0
        rep = GapReport.load(tmp_path / f"{stem}.json")
        assert rep.to_markdown() == (tmp_path / f"{stem}.md").read_text()
        assert rep.approx_family == "ffg" and rep.meta["paper"] is None
    assert "minus_vae" in res["models"]["GPVAE"] and "minus_vae" not in res["models"]["VAE"]
    assert res["models"]["GPVAE"]["noise_crossing_fraction"] is not None and "uncertainty" in res["models"]["GPVAE"]
    md = (tmp_path / "results.md").read_text()
    assert "GPVAE − VAE" in md and (tmp_path / "gaps.png").is_file()
    again = gpvae_gaps.main(argv)
    assert again["models"]["GPVAE"]["amortization_gap"] == res["models"]["GPVAE"]["amortization_gap"]
    with pytest.raises(ConfigError, match="other evaluation settings"):  # never mixed with other settings
        gpvae_gaps.main(argv + ["--eval-samples", "30"])


@pytest.mark.parametrize("module,argv,message", [
    (gpvae_inference_time, ["--rounds", "0"], "--rounds=0"),
    (gpvae_uncertainty, ["--lr", "0"], "--lr=0"),
    (gpvae_uncertainty, ["--profile", "gpu"], "invalid choice"),
    (gpvae_gaps, ["--num-points", "-3"], "--num-points=-3"),
    (gpvae_gaps, ["--sa-steps", "0"], "--sa-steps=0"),
])
def test_bad_options_stop_with_one_line(module, argv, message, capsys, tmp_path):
    with pytest.raises(SystemExit) as e:
        module.main(argv + ["--out", str(tmp_path)])
    assert e.value.code == 2
    assert message in capsys.readouterr().err


def _table1_argv(mnist_dir, out, *extra):
    return ["--quick", "--data-dir", str(mnist_dir), "--out", str(out), "--quiet", "--families", "vae,sa1,gpvae",
            "--seeds", "0,1,2", *extra]


def test_table1_quick_ttests_and_resume(tmp_path, mnist_dir):
    """Per (model, seed) one run; the assembled table's means, SDs, best model and p-values equal numpy's and
    scipy's on the per-run evaluations (read back from each run's eval.json); a rerun trains and evaluates
    nothing again, and an interrupted training resumes from its checkpoint."""
    from scipy.stats import ttest_ind

    from pyro_vaegap.experiments import gpvae_table1 as t1
    from pyro_vaegap.train import read_checkpoint, train

    argv = _table1_argv(mnist_dir, tmp_path, "--epochs", "2")
    s = t1.settings(t1.build_parser().parse_args(argv))
    # an interrupted training of one cell, left after its first epoch: the sweep must resume it
    cfg = t1.train_config(t1.Spec("sa", 1), 2, 1, s, t1.build_parser().parse_args(argv).data_dir)
    interrupted = tmp_path / "runs" / "sa1_d2_s1"
    first_epoch = train(cfg, interrupted, stop_after=1, progress=False).log
    res = t1.main(argv)
    assert read_checkpoint(interrupted)["log"][:1] == first_epoch and read_checkpoint(interrupted)["epoch"] == 2
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["git"]["commit"] and saved["results"]["ttest"] == "welch"
    per_seed = {}
    for m, slug in (("VAE", "vae"), ("SA(1)", "sa1"), ("GPVAE", "gpvae")):
        recs = [json.loads((tmp_path / "runs" / f"{slug}_d2_s{k}" / "eval.json").read_text()) for k in (0, 1, 2)]
        assert all(r["git"]["commit"] == saved["git"]["commit"] for r in recs)  # each run records its own code
        per_seed[m] = [r["eval"]["iwae"]["mean"] for r in recs]
    cells = {m: saved["results"]["table"][m]["2"] for m in per_seed}
    best = max(per_seed, key=lambda m: sum(per_seed[m]))
    assert saved["results"]["best"]["2"] == best and cells[best]["best"] and cells[best]["p_vs_best"] is None
    for m, v in per_seed.items():
        assert cells[m]["iwae"] == v and cells[m]["seeds"] == [0, 1, 2]
        assert cells[m]["iwae_mean"] == pytest.approx(sum(v) / 3, abs=1e-9)
        assert cells[m]["iwae_sd"] == pytest.approx(torch.tensor(v, dtype=torch.float64).std().item(), abs=1e-9)
        if m != best:
            p = ttest_ind(v, per_seed[best], equal_var=False).pvalue
            assert cells[m]["p_vs_best"] == pytest.approx(p, rel=1e-12) and 0 < p <= 1
            assert cells[m]["not_worse"] == (p >= 0.05)
    f = saved["results"]["finding"]["2"]
    assert f["gpvae_best_or_tied"] == cells["GPVAE"]["not_worse"] and set(f["against_groups"]) == {"VAE", "SA"}
    md = (tmp_path / "results.md").read_text()
    assert f"**{cells[best]['iwae_mean']:.2f} ± {cells[best]['iwae_sd']:.2f}**" in md and "| – |" in md
    assert (tmp_path / "table1.png").is_file()
    stamps = {p: p.stat().st_mtime_ns for p in tmp_path.glob("runs/*/*")}
    assert t1.main(argv)["table"] == res["table"]  # everything read back, nothing recomputed
    assert {p: p.stat().st_mtime_ns for p in tmp_path.glob("runs/*/*")} == stamps
    with pytest.raises(ConfigError, match="other settings"):  # a finished run is never mixed with other settings
        t1.main(argv + ["--iwae-samples", "7"])


def test_table1_gaussian_model_options_pass_through(tmp_path):
    """--dataset / --model / --variance reach the training runs (continuous data, fixed-variance Gaussian)."""
    from pyro_vaegap.experiments import gpvae_table1 as t1

    res = t1.main(["--quick", "--out", str(tmp_path), "--quiet", "--families", "vae", "--dataset",
                   "digits_continuous", "--model", "gaussian", "--variance", "fixed"])
    cfg = json.loads((tmp_path / "runs" / "vae_d2_s0" / "eval.json").read_text())["train_config"]
    assert (cfg["dataset"], cfg["model"], cfg["variance"]) == ("digits_continuous", "gaussian", "fixed")
    assert all(math.isfinite(v) for v in res["table"]["VAE"]["2"]["iwae"])


def test_table1_learned_sigma2_is_the_models_and_the_fc_figures_stand_beside_mlp_runs(tmp_path):
    """--variance scalar: each run's eval.json records the σ_x² its trained model holds (read back from its
    checkpoint; moved from its start), the table prints it; MLP runs at dim z 10 get the paper's fully connected
    decoder figure (supplement Table 10) beside Table 1's, where the paper has one; a fixed σ_x² records none. The
    cpu_converged profile learns σ_x²."""
    from torch.distributions import constraints, transform_to

    from pyro_vaegap.experiments import gpvae_table1 as t1
    from pyro_vaegap.report import papers
    from pyro_vaegap.studies.kim_pavlovic import PAPER_SIGMA2
    from pyro_vaegap.train import read_checkpoint

    argv = ["--quick", "--out", str(tmp_path), "--quiet", "--families", "vae,iaf1", "--dims", "10", "--seeds", "0",
            "--dataset", "digits_continuous", "--model", "gaussian", "--arch", "mlp"]
    res = t1.main(argv + ["--variance", "scalar"])
    for slug in ("vae", "iaf1"):
        run = tmp_path / "runs" / f"{slug}_d10_s0"
        held = transform_to(constraints.positive)(read_checkpoint(run)["model"]["sigma2_unconstrained"])
        rec = json.loads((run / "eval.json").read_text())
        assert rec["sigma2"] == pytest.approx(float(held), rel=1e-6) and rec["sigma2"] != pytest.approx(PAPER_SIGMA2)
    cell = res["table"]["VAE"]["10"]
    assert cell["sigma2"] == [json.loads((tmp_path / "runs" / "vae_d10_s0" / "eval.json").read_text())["sigma2"]]
    md = (tmp_path / "results.md").read_text()
    fc = papers.value("kim2021", "10", "VAE", "mnist/dim_z=10/fc")
    assert "d=10 paper, FC decoder" in md and f"| {fc:.1f} |" in md and "learned σ_x²" in md
    assert f"{cell['sigma2'][0]:.5f}" in md
    assert res["paper_fc"]["VAE"]["10"]["value"] == fc and res["paper_fc"]["IAF(1)"]["10"] is None
    fixed = t1.main(argv + ["--variance", "fixed", "--out", str(tmp_path / "fixed")])
    assert fixed["table"]["VAE"]["10"]["sigma2"] == [] and "learned σ_x²" not in (tmp_path / "fixed" / "results.md"
                                                                                   ).read_text()
    args = t1.build_parser().parse_args(["--profile", "cpu_converged"])
    assert t1.train_config(t1.Spec("vae"), 10, 0, t1.settings(args), args.data_dir).variance == "scalar"


def test_table1_paper_profile_reaches_the_run_configs():
    """--profile paper: grey-level MNIST, the fixed-σ_x Gaussian decoder, Table 6's networks, a 10% hold-out of all
    60,000 training images, the best validation epoch, and GPVAE's separate p = 256 feature networks with the
    closed-form expected-log term (the shared-feature, Monte Carlo variant one option away)."""
    from pyro_vaegap.experiments import gpvae_table1 as t1
    from pyro_vaegap.studies.kim_pavlovic import PAPER_SIGMA2

    def config(spec, *extra):
        args = t1.build_parser().parse_args(["--profile", "paper", *extra])
        return t1.train_config(spec, 10, 3, t1.settings(args), args.data_dir)

    cfg = config(t1.Spec("gpvae"))
    assert (cfg.dataset, cfg.model, cfg.variance, cfg.sigma2) == ("mnist_continuous", "gaussian", "fixed", PAPER_SIGMA2)
    assert (cfg.arch, cfg.hidden, cfg.decoder_layers, cfg.activation) == ("conv_kim", 256, 1, "relu")
    assert (cfg.train_split, cfg.valid_split, cfg.holdout_fraction, cfg.keep_best) == ("train+valid", "holdout", 0.1,
                                                                                       True)
    assert (cfg.lr, cfg.batch_size, cfg.epochs, cfg.num_train) == (5e-4, 128, 2000, None)
    assert cfg.guide_options == {"hidden": 256, "layers": 1, "activation": "relu", "features": "separate",
                                 "feature_width": 256, "expected_log": "closed_form"}
    shared = config(t1.Spec("gpvae"), "--gp-features", "shared", "--expected-log", "monte_carlo")
    assert shared.guide_options == {"hidden": 256, "layers": 1, "activation": "relu"}
    assert config(t1.Spec("sa", 4)).guide_options == {"hidden": 256, "layers": 1, "activation": "relu", "num_steps": 4}
    # the cpu profile's configs are those of the committed runs (docs/results/gpvae_table1), so they are reused
    args = t1.build_parser().parse_args([])
    cpu = t1.train_config(t1.Spec("gpvae"), 10, 0, t1.settings(args), args.data_dir)
    assert cpu.guide_options == {"hidden": 200, "layers": 2, "activation": "elu"} and not cpu.keep_best


def test_gaps_cpu_converged_evaluates_the_table_runs(tmp_path, mnist_dir):
    """gpvae_gaps --profile cpu_converged builds for VAE, SA(1) and GPVAE the configs gpvae_table1 --profile
    cpu_converged builds (dim z 10, any seed), so --table-out can read that sweep's runs; it looks for them at
    OUT/runs/<model>_d<dim>_s<seed>, and a run found there with other settings is refused and left untouched."""
    from pyro_vaegap.experiments import gpvae_table1 as t1

    targs = t1.build_parser().parse_args(["--profile", "cpu_converged", "--data-dir", "/d"])
    gargs = gpvae_gaps.build_parser().parse_args(["--profile", "cpu_converged", "--data-dir", "/d", "--sa-steps", "1"])
    gs = gpvae_gaps.settings(gargs)
    assert gs["latent_dim"] == 10 and list(gpvae_gaps.models(1)) == ["VAE", "SA(1)", "GPVAE"]
    for spec in gpvae_gaps.models(1).values():
        ours = gpvae_gaps.train_config(spec, gs["latent_dim"], 2, gs, "/d")
        assert ours == t1.train_config(spec, 10, 2, t1.settings(targs), "/d") and ours.epochs == 200
    table = tmp_path / "table"
    t1.main(["--quick", "--out", str(table), "--quiet", "--families", "vae", "--data-dir", str(mnist_dir)])
    ckpt = table / "runs" / "vae_d2_s0" / "checkpoint.pt"
    stamp = ckpt.stat().st_mtime_ns
    with pytest.raises(ConfigError, match="vae_d2_s0"):  # the gaps smoke run's settings are not the table's
        gpvae_gaps.main(["--quick", "--out", str(tmp_path / "gaps"), "--quiet", "--data-dir", str(mnist_dir),
                         "--table-out", str(table), "--latent-dim", "2"])
    assert ckpt.stat().st_mtime_ns == stamp


@pytest.mark.parametrize("argv,message", [
    (["--families", "vae,foo"], "'foo' is not a model of the table"),
    (["--families", "sa3"], "K=3 is not allowed for SA"),
    (["--families", "me1"], "M=1 is not allowed for ME"),
    (["--families", "gpvae2"], "gpvae takes no K"),
    (["--dims", "10,0"], "--dims '10,0' is not allowed"),
    (["--seeds", "a"], "--seeds 'a' is not allowed"),
    (["--test-points", "0"], "--test-points=0 is not allowed"),
    (["--big-points", "30"], "--big-points=30"),
    (["--arch", "rnn"], "argument --arch: invalid choice: 'rnn'"),
    (["--expected-log", "exact"], "argument --expected-log: invalid choice: 'exact'"),
    (["--keep-best", "2"], "argument --keep-best: invalid choice: 2"),
    (["--device", "tpu"], "--device 'tpu'"),
])
def test_table1_bad_options_stop_with_one_line(argv, message, capsys, tmp_path):
    from pyro_vaegap.experiments import gpvae_table1

    with pytest.raises(SystemExit) as e:
        gpvae_table1.main(["--quick"] + argv + ["--out", str(tmp_path)])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "runs").exists()


def test_stability_curve_summary_counts_setbacks_against_the_best_so_far():
    from pyro_vaegap.experiments.gpvae_stability import curve_summary

    r = curve_summary([-10.0, -8.0, -20.0, -9.0, -14.5, -7.0], drop=5.0)
    assert (r["setbacks"], r["max_drop"], r["best"], r["best_epoch"], r["last"]) == (2, 12.0, -7.0, 6, -7.0)
    assert curve_summary([-3.0, -2.0, -1.0], drop=5.0)["setbacks"] == 0


def test_stability_quick_pairs_the_two_estimators(tmp_path, mnist_dir):
    """Each (lr, seed) trains the Monte Carlo and the closed-form GPVAE, each run's config naming its estimate, and
    each run's summary is its log.csv's."""
    import csv

    from pyro_vaegap.experiments import gpvae_stability

    runs = gpvae_stability.main(["--quick", "--data-dir", str(mnist_dir), "--out", str(tmp_path), "--quiet"])
    assert set(runs) == {"lr0.001_s0_monte_carlo", "lr0.001_s0_closed_form"}
    for key, r in runs.items():
        with open(tmp_path / "runs" / key / "log.csv") as fh:
            valid = [float(row["valid_elbo"]) for row in csv.DictReader(fh)]
        assert r["valid_elbo"] == valid and r["best"] == max(valid) and 0 <= r["crossing_fraction"] <= 1
        cfg = json.loads((tmp_path / "runs" / key / "config.json").read_text())["config"]
        assert cfg["guide_options"].get("expected_log", "monte_carlo") == r["expected_log"]


def test_epoch_cost_quick_and_its_plan(tmp_path, mnist_dir):
    """Seconds per epoch = ⌈54,000 / 128⌉ steps at the median step time + the validation pass scaled to 6,000
    images; the plan's core-hours are those per-epoch times × epochs × seeds."""
    from pyro_vaegap.experiments import gpvae_epoch_cost as ec

    cells, plan = ec.main(["--quick", "--data-dir", str(mnist_dir), "--out", str(tmp_path), "--quiet"])
    assert set(cells) == {"VAE|mlp", "GPVAE|mlp"}
    for c in cells.values():
        assert c["batches_per_epoch"] == 422 and c["config"]["batch_size"] == 128
        assert c["epoch_seconds"] == pytest.approx(422 * c["step_seconds"] + c["valid_seconds"] * 6000 / 50)
    p = plan["mlp"]
    assert p["core_hours"] == pytest.approx(sum(cells[f"{m}|mlp"]["epoch_seconds"] for m in ("VAE", "GPVAE")) * 2 * 1
                                            / 3600)
    assert cells["GPVAE|mlp"]["config"]["guide_options"]["features"] == "separate"


def test_stability_compares_shared_and_separate_features(tmp_path, mnist_dir):
    from pyro_vaegap.experiments import gpvae_stability

    runs = gpvae_stability.main(["--quick", "--compare", "gp_features", "--data-dir", str(mnist_dir), "--out",
                                 str(tmp_path), "--quiet"])
    assert set(runs) == {"lr0.001_s0_shared", "lr0.001_s0_separate"}
    for key, r in runs.items():
        opts = json.loads((tmp_path / "runs" / key / "config.json").read_text())["config"]["guide_options"]
        assert opts.get("features", "shared") == r["gp_features"] == key.split("_")[-1]
    assert "Separate minus shared" in (tmp_path / "results.md").read_text()
