"""experiments.cremer_tables: the table builder on synthetic reports, its refusals, and (slow) a --quick run."""
import json

import numpy as np
import pytest

from experiments import cremer_tables
from pyro_vaegap.utils import ConfigError


def _report(family="ffg", families=("ffg",), n=5, seed=0, paper=None, shift=0.0, rng=None):
    """A gap report's JSON with per-point rows drawn at random (the builder only reads these keys)."""
    rng = rng or np.random.default_rng(0)
    log_px = -90 + rng.normal(size=n)
    pp = {"log_px": log_px, "amortized": log_px - 5 - shift - rng.random(n)}
    for f in families:
        pp[f"local:{f}"] = log_px - 1 - rng.random(n)
        pp[f"approximation:{f}"] = log_px - pp[f"local:{f}"]
        pp[f"amortization:{f}"] = pp[f"local:{f}"] - pp["amortized"]
        pp[f"converged:{f}"] = [True] * (n - 1) + [f != "fullcov"]  # one capped optimization
    pp["inference"] = log_px - pp["amortized"]
    return {"family": family, "approx_family": family,
            "per_point": {k: np.asarray(v).tolist() for k, v in pp.items()},
            "config": {"families": list(families), "seed": seed},
            "meta": {"num_points": n, "paper": paper, "git": {"commit": "abc"}}}


def test_paired_differences_use_each_variants_own_family():
    rng = np.random.default_rng(1)
    ref = _report(paper="cremer2018_table2_mnist_ffg", rng=rng)
    other = _report(family="fullcov", families=("ffg", "fullcov"), shift=2.0, rng=rng)
    table = cremer_tables.compare({"ffg": ref, "fullcov_trained": other}, "ffg")
    row = table["variants"]["fullcov_trained"]
    own = np.asarray(other["per_point"]["amortization:fullcov"]) - np.asarray(ref["per_point"]["amortization:ffg"])
    assert row["paired"]["amort. gap"][0] == pytest.approx(own.mean())
    assert row["paired"]["amort. gap"][1] == pytest.approx(own.std(ddof=1) / np.sqrt(len(own)))
    assert "L[q*_fullcov]" in row["columns"] and not table["variants"]["ffg"]["paired"]
    # the paper's Table 2 column: its amortization gap beside ours, nothing for the unpublished variant
    assert table["variants"]["ffg"]["paper"]["amort. gap"] == 1.34 and row["paper"] == {}
    md = cremer_tables.table_markdown("T", table)
    assert "[paper 1.34]" in md and "(Δ " in md
    assert "step cap before the paper's rule: `fullcov_trained` fullcov: 1." in md


def test_table5_gives_the_two_layer_model_its_own_paper_value():
    reports = {v: _report(paper="cremer2018_table2_mnist_ffg" if v == "ffg" else
                          f"cremer2018_table5_mnist_{v[-1]}_layers") for v in ("decoder0", "ffg", "decoder4")}
    _, _, papers = cremer_tables.TABLES[5]
    table = cremer_tables.compare(reports, "ffg", papers)
    assert table["variants"]["ffg"]["paper"] == {"approx. gap ffg": 1.83}
    assert table["variants"]["decoder0"]["paper"] == {"approx. gap ffg": 3.90}


def test_refusals(tmp_path):
    with pytest.raises(ConfigError, match="other test points"):
        cremer_tables.compare({"ffg": _report(n=5), "no_anneal": _report(n=6)}, "ffg")
    with pytest.raises(ConfigError, match=r"--tables '4' is not allowed.*2, 3, 5, 6, 10"):
        cremer_tables.parse_tables("4")
    (tmp_path / "ffg").mkdir()
    (tmp_path / "ffg" / "gaps.json").write_text(json.dumps(_report()))
    with pytest.raises(ConfigError, match="families 'ffg', but variant 'ffg' needs 'ffg,flow'"):
        cremer_tables.variant_report("ffg", tmp_path, None, "cpu")


def test_bad_tables_option_exits_2(capsys):
    with pytest.raises(SystemExit) as e:
        cremer_tables.run_main(cremer_tables.main, ["--tables", "2,7"])
    assert e.value.code == 2 and "--tables '2,7' is not allowed" in capsys.readouterr().err


@pytest.mark.slow
def test_quick_run_end_to_end(tmp_path, mnist_dir):
    out = tmp_path / "out"
    cremer_tables.main(["--quick", "--tables", "6", "--runs", str(tmp_path / "runs"), "--out", str(out),
                        "--data-dir", str(mnist_dir)])
    res = json.loads((out / "results.json").read_text())["results"]["tables"]["6"]["variants"]
    assert set(res) == {"ffg", "no_anneal"}
    assert all(np.isfinite(v["columns"]["log p̂"][0]) for v in res.values())
    assert "no_anneal" in (out / "results.md").read_text()


def test_compare_reports_from_files(tmp_path):
    rng = np.random.default_rng(2)
    for name, shift in (("a", 0.0), ("b", 1.0)):
        (tmp_path / f"{name}.json").write_text(json.dumps(_report(shift=shift, rng=rng)))
    out = tmp_path / "out"
    cremer_tables.main(["--compare", f"short={tmp_path / 'a.json'}", f"long={tmp_path / 'b.json'}", "--out", str(out)])
    table = json.loads((out / "results.json").read_text())["results"]["compare"]
    assert table["reference"] == "short" and list(table["variants"]) == ["short", "long"]
    with pytest.raises(ConfigError, match="no gap report at"):
        cremer_tables.read_reports([f"x={tmp_path / 'missing.json'}"])
    with pytest.raises(ConfigError, match="expected NAME=REPORT.json"):
        cremer_tables.read_reports(["just-a-path.json"])
