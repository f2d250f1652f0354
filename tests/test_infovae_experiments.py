"""The InfoVAE experiments (experiments/infovae_*.py) end to end on their ``--quick`` profiles, and their options."""
import json
import math

import pytest

from pyro_vaegap.experiments import (infovae_gaps, infovae_latent2d, infovae_loglik, infovae_metrics, infovae_prop1,
                                     infovae_variance)


def test_prop1_quick(tmp_path):
    """Warm start, both objectives, records, figures and the results files; both objectives start from the
    warm start's last record."""
    res = infovae_prop1.main(["--quick", "--out", str(tmp_path), "--quiet"])
    warm = res["warm_start"]["trajectory"]
    assert warm[0]["phase"] == "init" and warm[-1]["step"] == infovae_prop1.QUICK["warmup_steps"]
    for obj in ("elbo", "mmd"):
        traj = res[obj]["trajectory"]
        assert traj[-1]["step"] == warm[-1]["step"] + infovae_prop1.QUICK["steps"]
        assert all(len(r["loc"]) == 2 and min(r["scale"]) > 0 and -0.05 <= r["mi"] <= math.log(2) + 0.05 for r in traj)
    assert res["mmd"]["config"]["lambda_"] == 500.0 and res["mmd"]["config"]["alpha"] == 0.0
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["experiment"] == "infovae_prop1" and "git" in saved and saved["seed"] == 0
    for f in ("results.md", "prop1_posteriors.png", "prop1_trajectories.png"):
        assert (tmp_path / f).is_file()


def test_prop1_without_warm_start(tmp_path):
    """``--warmup-steps 0``: both objectives start from the random initialization itself."""
    res = infovae_prop1.main(["--steps", "10", "--warmup-steps", "0", "--hidden", "8", "--record-every", "5",
                              "--eval-samples", "50", "--num-train", "200", "--out", str(tmp_path), "--quiet"])
    assert [r["step"] for r in res["warm_start"]["trajectory"]] == [0]
    assert res["elbo"]["trajectory"][0]["step"] == 5 and res["mmd"]["trajectory"][-1]["step"] == 10


def test_variance_quick(tmp_path, mnist_dir):
    res = infovae_variance.main(["--quick", "--data-dir", str(mnist_dir), "--out", str(tmp_path), "--quiet"])
    assert set(res) == {"200", "400"}
    for n in res:
        for obj in ("elbo", "mmd"):
            r = res[n][obj]
            agg = r["train_aggregate"]
            assert agg["num_rows"] == int(n) and math.isfinite(agg["log_det_cov_draws"])
            assert abs(agg["log_det_cov_draws"] - agg["log_det_cov_exact"]) < 1.0
            assert r["test"]["nll_nats"] <= r["test"]["neg_elbo_nats"] + 1e-6
    assert (tmp_path / "variance.png").is_file() and (tmp_path / "runs" / "mmd_n400" / "checkpoint.pt").is_file()
    # a second run reuses the finished training runs (same numbers from the same weights and seeds)
    again = infovae_variance.main(["--quick", "--data-dir", str(mnist_dir), "--out", str(tmp_path), "--quiet"])
    assert again["400"]["mmd"]["test"] == res["400"]["mmd"]["test"]


def test_latent2d_quick(tmp_path, mnist_dir):
    res = infovae_latent2d.main(["--quick", "--data-dir", str(mnist_dir), "--out", str(tmp_path), "--quiet"])
    for obj in ("elbo", "mmd"):
        g = res[obj]["grid"]
        assert g["num_points"] == infovae_latent2d.QUICK["grid_points"] and math.isfinite(g["log_px"])
        assert g["inference_gap"] > -1.0  # log p(x) − ELBO = KL ≥ 0 up to Monte Carlo and (coarse) quadrature
        assert res[obj]["plotted_posteriors"]["points"] == infovae_latent2d.QUICK["posterior_points"]
        assert g["posteriors_at_coarse_edge"] == 0 and g["last_level_change_max_abs"] < 0.1
    for f in ("latent2d_aggregate.png", "latent2d_posteriors.png", "latent2d_samples.png", "results.md"):
        assert (tmp_path / f).is_file()


def test_gaps_quick(tmp_path, mnist_dir):
    """Both gap reports are saved (and re-render to their own markdown) beside the information terms."""
    from pyro_vaegap.gaps import GapReport

    res = infovae_gaps.main(["--quick", "--data-dir", str(mnist_dir), "--out", str(tmp_path), "--quiet"])
    for obj in ("elbo", "mmd"):
        rep = GapReport.load(tmp_path / f"gaps_{obj}.json")
        assert rep.to_markdown() == (tmp_path / f"gaps_{obj}.md").read_text()
        assert rep.meta["paper"] is None and rep.meta["train_config"]["latent_dim"] == 3
        info = res[obj]["information"]
        assert info["mi"] <= info["log_n"] + 1e-9 and info["minibatch"]["mi"] <= info["minibatch"]["log_b"] + 1e-9
        assert not (tmp_path / f"gaps_{obj}.partial").exists()
    assert (tmp_path / "gaps.png").is_file()


@pytest.mark.parametrize("module,argv,message", [
    (infovae_prop1, ["--steps", "0"], "--steps=0"),
    (infovae_prop1, ["--num-train", "301"], "must be even"),
    (infovae_variance, ["--sizes", "100", "60000"], "between 2 and 50000"),
    (infovae_variance, ["--lambda", "-1"], "--lambda=-1.0"),
    (infovae_latent2d, ["--latent-dim", "3"], "need dim z = 2"),
    (infovae_latent2d, ["--grid-points", "5000"], "expected --posterior-points <= --grid-points"),
    (infovae_gaps, ["--mi-batch", "20000"], "at most"),
    (infovae_gaps, ["--alpha", "-0.5"], "--alpha=-0.5"),
    (infovae_metrics, ["--dims", "0", "5"], "every latent dimension must be >= 1"),
    (infovae_metrics, ["--classifier-images", "6000"], "must fit in the 10000 labelled test images"),
    (infovae_metrics, ["--num-samples", "0"], "--num-samples=0 is not allowed"),
])
def test_cli_rejects_bad_options(module, argv, message, capsys, tmp_path):
    with pytest.raises(SystemExit) as e:
        module.main(argv + ["--out", str(tmp_path)])
    assert e.value.code == 2
    assert message in capsys.readouterr().err


def test_loglik_quick(tmp_path, mnist_dir):
    """The four PixelCNN models train, are scored by IWAE and AIS, and stand beside the paper's Table 1."""
    res = infovae_loglik.main(["--quick", "--data-dir", str(mnist_dir), "--out", str(tmp_path), "--quiet"])
    assert sorted(res["ranking"]) == sorted(infovae_loglik.PAPER) and res["paper_ranking"][0] == "mmd"
    for obj, paper in infovae_loglik.PAPER.items():
        r = res[obj]
        assert r["config"]["model"] == "pixelcnn" and r["config"]["latent_dim"] == 5
        assert r["config"]["divergence"] == (None if obj == "elbo" else obj)
        assert r["paper_nll_nats"] == paper and r["num_points"] == infovae_loglik.QUICK["num_test"]
        # an untrained model on 784 pixels: far from 0 nats and from the paper's, but finite
        assert 100 < r["nll_nats"] < 2000 and math.isfinite(r["ais"]["nll_nats"])
        assert [e["epoch"] for e in r["train_log"]] == [1.0] and math.isfinite(r["train_log"][0]["valid_elbo"])
        info = r["information"]  # analytic KL >= 0; the with-self MI estimate lies in [0, log N]
        assert info["avg_kl"] > 0 and -1e-9 <= info["mi"] <= info["log_n"] + 1e-9
    # paired with the ELBO model on the same test images, one value per image, by every estimator
    paired = res["paired_vs_elbo"]
    assert set(paired) == {"iwae", "prior", "ais"} and set(paired["iwae"]) == {"mmd", "stein", "adversarial"}
    assert all(len(res[o]["nll_nats_per_point"]) == infovae_loglik.QUICK["num_test"] for o in infovae_loglik.PAPER)
    assert all(math.isfinite(v["mean"]) and v["se"] > 0 for v in paired["iwae"].values())
    # the authors' prior-proposal estimate on the first images, and the tightest estimator named for the ranking
    for obj in infovae_loglik.PAPER:
        r = res[obj]
        assert r["prior"]["num_points"] == 2 and r["prior"]["samples"] == 8 and r["prior"]["ess_min"] >= 1 - 1e-9
        t = r["tightest"]
        assert t["minus_iwae"]["prior"]["num_points"] == 2 and t["minus_iwae"]["ais"]["num_points"] == 1
        assert t["best"] in t["tight"] and set(t["tight"]) <= {"iwae", "prior", "ais"}
    assert res["ranked_by"] in ("iwae", "prior", "ais") and 4 <= sum(res["estimator_votes"].values()) <= 12
    assert (tmp_path / "curves.png").is_file()
    # a rerun reuses every model's evaluation (saved in its run folder)
    again = infovae_loglik.main(["--quick", "--data-dir", str(mnist_dir), "--out", str(tmp_path), "--quiet"])
    assert again["mmd"]["nll_nats_per_point"] == res["mmd"]["nll_nats_per_point"]
    md = (tmp_path / "results.md").read_text()
    assert "statically" in md and "82.75" in md and "80.76" in md
    assert json.loads((tmp_path / "results.json").read_text())["experiment"] == "infovae_loglik"


def test_late_slope_reads_the_last_epochs_of_the_curve():
    """The flatness check of the converged profile: the least-squares slope of the last five epochs only (a
    curve that rose 2 nats per epoch and then only scattered about a level has slope 0), its standard error from the scatter about
    the line (against the textbook formula), and no slope from fewer than three epochs."""
    flat_end = [{"epoch": e, "valid_elbo": 2.0 * e if e <= 5 else 10.0 + 0.2 * (e % 2)} for e in range(1, 11)]
    got = infovae_loglik.late_slope(flat_end)
    assert got["slope"] == pytest.approx(0.0, abs=1e-12) and got["se"] > 0 and got["epochs"] == 5
    y = [1.0, 1.5, 1.7, 2.6, 2.7]
    log = [{"epoch": e, "valid_elbo": -9.0, "train_objective": v} for e, v in zip(range(1, 6), y)]
    got = infovae_loglik.late_slope(log, "train_objective")
    b = sum((e - 3) * (v - sum(y) / 5) for e, v in zip(range(1, 6), y)) / 10
    rss = sum((v - sum(y) / 5 - b * (e - 3)) ** 2 for e, v in zip(range(1, 6), y))
    assert got["slope"] == pytest.approx(b, rel=1e-12) and got["se"] == pytest.approx(math.sqrt(rss / 30), rel=1e-12)
    assert math.isnan(infovae_loglik.late_slope(log[:2])["se"])


def test_metrics_quick(tmp_path, mnist_dir):
    """Fig. 6's five panels for the five objectives at two dims, each model's saved in its run folder."""
    argv = ["--quick", "--data-dir", str(mnist_dir), "--out", str(tmp_path), "--quiet"]
    res = infovae_metrics.main(argv)
    q = infovae_metrics.QUICK
    clf = res["classifier"]
    # 200 labelled images and 10 classes: a linear classifier on pixels is far better than chance (0.1)
    assert clf["accuracy"] > 0.5 and math.isclose(sum(clf["true_class_freq"]), 1.0)
    for d in q["dims"]:
        for obj in infovae_metrics.OBJECTIVES:
            r = res[str(d)][obj]
            assert r["config"]["latent_dim"] == d
            assert list(r["curve"]) == [str(e) for e in range(1, q["epochs"] + 1)]
            assert all(math.isfinite(v) for v in r["curve"].values())
            s = r["samples"]  # Gibbs: the cross-entropy is at least the entropy of the true classes
            assert s["cross_entropy"] >= s["entropy_true"] - 1e-12 and sum(s["argmax_counts"]) == q["num_samples"]
            assert 0.0 <= r["svm_error"] <= 1.0 and math.isfinite(r["log_det_cov_per_dim"])
    ae = res[str(q["dims"][0])]["ae"]["config"]
    assert (ae["objective"], ae["alpha"], ae["lambda_"]) == ("infovae", 1.0, 0.0)
    assert (tmp_path / "metrics.png").is_file() and "(E) SVM error" in (tmp_path / "results.md").read_text()
    # every model's metrics sit in its run folder (what a rerun reuses)
    saved = json.loads((tmp_path / "runs" / "mmd_d3" / infovae_metrics.METRICS_FILE).read_text())
    assert saved["final"]["mmd2"] == res["3"]["mmd"]["mmd2"] and saved["curve"] == res["3"]["mmd"]["curve"]
