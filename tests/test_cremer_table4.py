"""Cremer et al. Table 4 experiment: new encoders trained on one frozen decoder, each with its gap report."""
import json
import math

import numpy as np
import torch

from pyro_vaegap.experiments import cremer_table4
from pyro_vaegap.train import read_checkpoint


def test_table4_quick_shares_one_decoder_and_resumes(tmp_path, mnist_dir, capsys):
    out = tmp_path / "out"
    argv = ["--quick", "--data-dir", str(mnist_dir), "--out", str(out), "--num-points", "2", "--threads", "1",
            "--encoders", "ffg,flow"]
    assert cremer_table4.main(argv) == 0
    saved = json.loads((out / "results.json").read_text())
    assert saved["experiment"] == "cremer_table4" and saved["seed"] == 0 and "commit" in saved["git"]
    res = saved["results"]
    assert list(res["encoders"]) == ["original", "ffg", "flow"] and list(res["paired"]) == ["flow - ffg", "ffg - original"]
    # one frozen decoder: bit-identical weights in every run, and the decoder's quantities, computed afresh by each
    # report from the same seeds, agree point by point (they would not if a report's AIS or q* drew on its encoder)
    decoder = read_checkpoint(out / "base" / "run")["model"]
    for name in ("ffg", "flow"):
        mine = read_checkpoint(out / name / "run")["model"]
        assert all(torch.equal(mine[k], decoder[k]) for k in decoder)
    reports = {name: json.loads((out / d / "gaps.json").read_text())["per_point"]
               for name, d in (("original", "base"), ("ffg", "ffg"), ("flow", "flow"))}
    for key in ("log_px", "local:ffg", "local:flow"):
        assert all(np.array_equal(reports[n][key], reports["original"][key]) for n in reports), key
    assert res["shared_max_abs_difference"] == {"log_px": 0.0, "local:ffg": 0.0, "local:flow": 0.0}
    enc = res["encoders"]
    assert all(math.isfinite(v) for n in ("ffg", "flow") for v in reports[n]["amortized"])
    assert enc["flow"]["base_parameters"] == enc["ffg"]["parameters"] < enc["flow"]["parameters"]
    assert enc["ffg"]["hidden"] == "100" and enc["original"]["hidden"] == "200-200"
    diff = np.array(reports["flow"]["amortized"]) - np.array(reports["ffg"]["amortized"])
    assert res["paired"]["flow - ffg"]["elbo"]["mean"] == float(diff.mean())
    assert res["finding"]["ffg"]["verdict"] in ("holds", "reversed", "not resolved")
    md = (out / "results.md").read_text()
    assert all(f"| {n} | " in md for n in enc) and "| flow - ffg | " in md and "not available offline" in md
    # a rerun reuses every finished run and report; other evaluation settings are refused, not mixed in
    capsys.readouterr()
    assert cremer_table4.main(argv) == 0
    assert capsys.readouterr().out.count("reusing the finished report") == 3
    assert cremer_table4.main([*argv, "--ais-schedule", "linear"]) == 2
    assert "ffg/gaps.json was made with another evaluation config: pass --overwrite" in capsys.readouterr().err


def test_table4_bad_options_are_clear_errors(tmp_path, mnist_dir, capsys):
    common = ["--data-dir", str(mnist_dir), "--out", str(tmp_path / "out"), "--threads", "1"]
    assert cremer_table4.main([*common, "--base-run", str(tmp_path / "nope")]) == 2
    assert capsys.readouterr().err.startswith(f"cremer_table4: error: --base-run: {tmp_path / 'nope'} is not a "
                                              "training run: no checkpoint.pt there")
    assert cremer_table4.main([*common, "--base-run", "a", "--run-dir", "b"]) == 2
    assert "exclude each other" in capsys.readouterr().err
    assert cremer_table4.main([*common, "--encoders", "ffg,iaf"]) == 2
    assert "--encoders 'ffg,iaf' is not allowed: expected distinct names among ffg, flow, ffg_wide" in \
        capsys.readouterr().err
    assert cremer_table4.main([*common, "--small-hidden", "0"]) == 2
    assert "--small-hidden" in capsys.readouterr().err
    assert not (tmp_path / "out" / "base").exists()


def test_committed_page_is_rendered_from_its_json_with_cross_family_cells_marked(tmp_path):
    """The committed results.md is exactly what ``--render`` makes of the committed results.json (nothing computed),
    and in each encoder's row only its own family's column reads as an amortization gap: the other family's
    optimum against the encoder's q is marked cross-family (†)."""
    import shutil
    from pathlib import Path

    committed = Path(__file__).resolve().parents[1] / "docs" / "results" / "cremer_table4"
    shutil.copy(committed / "results.json", tmp_path / "results.json")
    assert cremer_table4.main(["--render", "--out", str(tmp_path)]) == 0
    md = (tmp_path / "results.md").read_text()
    assert md == (committed / "results.md").read_text()
    res = json.loads((committed / "results.json").read_text())["results"]
    families = res["gap_config"]["families"]
    for name, e in res["encoders"].items():
        row = next(line for line in md.splitlines() if line.startswith(f"| {name} | "))
        cells = row.strip("|").split(" | ")[-len(families):]
        assert [c.strip().endswith("†") for c in cells] == [f != e["family"] for f in families], row
    assert "amortization gap L[q*_flow]" not in md and "cross-family" in md
    assert cremer_table4.main(["--render", "--out", str(tmp_path / "none")]) == 2
