"""Cremer et al. Figure 2 experiment: the --quick smoke run writes its results, and every bound lies below the
quadrature log p(x)."""
import json

from pyro_vaegap.experiments import cremer_fig2


def test_fig2_quick(tmp_path, mnist_dir):
    res = cremer_fig2.main(["--quick", "--data-dir", str(mnist_dir), "--out", str(tmp_path / "out"),
                            "--runs", str(tmp_path / "run"), "--quiet"])
    assert len(res["points"]) == 4 and res["checks"]["quadrature_edge_points"] == 0
    for r in res["points"]:
        # L[q] = log p(x) − KL ≤ log p(x): 4 Monte Carlo standard errors, plus the quadrature's last refinement
        for key in ("amortized", "ffg", "flow"):
            assert r[f"elbo_{key}"] < r["log_px"] + 4 * r[f"elbo_{key}_se"] + abs(r["log_px_last_refinement"])
        assert r["posterior"]["kl_to_gaussian"] >= -1e-9
    saved = json.loads((tmp_path / "out" / "results.json").read_text())
    assert saved["experiment"] == "cremer_fig2" and "git" in saved and saved["seed"] == 0
    assert (tmp_path / "out" / "fig2.png").is_file() and (tmp_path / "out" / "results.md").is_file()
