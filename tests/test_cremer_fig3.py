"""Cremer et al. Figure 3 experiment: the --quick run writes its results, an interrupted run resumes to exactly the
numbers of an uninterrupted one (finished evaluations reused byte for byte), and bad schedules stop with clear errors."""
import json
import math

import pytest

from pyro_vaegap.experiments import cremer_fig3
from pyro_vaegap.data import seeded_subset
from pyro_vaegap.utils import ConfigError

SETTINGS = "ffg-small,flow-full"


def quick(mnist_dir, runs, out, *extra):
    return cremer_fig3.main(["--quick", "--data-dir", str(mnist_dir), "--runs", str(runs), "--out", str(out),
                             "--settings", SETTINGS, "--num-checkpoints", "2", "--quiet", *extra])


def evals(runs, setting):
    return {p.name: p.read_bytes() for p in sorted((runs / setting / "evals").glob("epoch_*.json"))}


def test_fig3_quick_resume(tmp_path, mnist_dir):
    runs = tmp_path / "runs"
    # an "interrupted" command: only the first checkpoint of each schedule was reached
    quick(mnist_dir, runs, tmp_path / "out1", "--checkpoints", "1", "--small-checkpoints", "1")
    first = {s: evals(runs, s) for s in SETTINGS.split(",")}
    assert all(list(v) == ["epoch_00001.json"] for v in first.values())
    # the whole schedules (full [1, 2], small [1, 4]), and a stronger AIS at the small run's last epoch
    res = quick(mnist_dir, runs, tmp_path / "out", "--check-points", "2", "--check-ais", "4,20,2")
    assert res["settings"]["flow-full"]["schedule"] == [1, 2] and res["settings"]["ffg-small"]["schedule"] == [1, 4]
    for s in SETTINGS.split(","):
        now = evals(runs, s)
        assert now["epoch_00001.json"] == first[s]["epoch_00001.json"]  # reused, not recomputed
        assert len(now) == 2
        for rec in map(json.loads, now.values()):
            assert len(rec["git"]["commit"]) == 40  # each record says which code made it (reused later)
            for split in ("train", "test"):
                assert len(rec[split]["ais"]) == 5
                assert all(math.isfinite(v) for k in ("ais", "iwae", "elbo") for v in rec[split][k])
    # the small run's training points are drawn from its own 100 training images (the rows train() uses)
    small = res["settings"]["ffg-small"]
    assert small["config"]["num_train"] == 100 and len(small["train_rows"]) == 5
    assert set(small["train_rows"]) <= set(seeded_subset(50_000, 100, 0).tolist())
    # an uninterrupted command gives the same numbers: segmented training and seeded evaluations are exact
    fresh = tmp_path / "fresh"
    quick(mnist_dir, fresh, tmp_path / "out2")
    for s in SETTINGS.split(","):
        a = {k: json.loads(v) for k, v in evals(runs, s).items()}
        b = {k: json.loads(v) for k, v in evals(fresh, s).items()}
        for k in a:
            assert a[k]["test"] == b[k]["test"] and a[k]["train"] == b[k]["train"], (s, k)
    check = res["findings"]["ffg-small"]
    assert check["check_epoch"] == 4 and check["check_points"] == 2 and "check_epoch" not in res["findings"]["flow-full"]
    assert all(math.isfinite(v) for split in ("train", "test") for v in check[f"check_minus_ours_{split}"])
    saved = json.loads((tmp_path / "out" / "results.json").read_text())
    assert saved["experiment"] == "cremer_fig3" and "git" in saved and saved["seed"] == 0
    assert set(saved["results"]["findings"]) == set(SETTINGS.split(","))
    assert (tmp_path / "out" / "fig3.png").is_file()
    md = (tmp_path / "out" / "results.md").read_text()
    assert "**ffg-small**" in md and "**flow-full**" in md and "AIS−IW test" in md

    # a schedule entry whose model is gone (the run is trained past it) is a clear error, not a silent wrong model
    with pytest.raises(ConfigError, match="past checkpoint epoch 2"):
        quick(mnist_dir, runs, tmp_path / "out3", "--small-checkpoints", "1,2,4")
    # saved evaluations made with other settings are not mixed in
    with pytest.raises(ConfigError, match="was evaluated with"):
        quick(mnist_dir, runs, tmp_path / "out3", "--iwae-samples", "60")


@pytest.mark.parametrize("extra, message", [
    (["--checkpoints", "1,5"], "--checkpoints entry 5 is not allowed: it is outside 1..2 (--epochs 2)"),
    (["--small-checkpoints", "0,2"], "--small-checkpoints entry 0 is not allowed"),
    (["--checkpoints", "1,x"], "expected comma-separated epoch numbers"),
    (["--settings", "ffg-huge"], "--settings entry 'ffg-huge' is not allowed"),
    (["--num-points", "200"], "--num-points=200 is not allowed"),
    (["--check-points", "9"], "--check-points=9 is not allowed: it must be in 0..--num-points (5)"),
    (["--check-points", "1", "--check-ais", "100,500"], "--check-ais is not allowed as given"),
    (["--check-points", "1", "--check-settings", "ffg-full"], "--check-settings entry 'ffg-full' is not allowed"),
])
def test_fig3_bad_options(tmp_path, mnist_dir, capsys, extra, message):
    with pytest.raises(SystemExit) as e:
        quick(mnist_dir, tmp_path / "runs", tmp_path / "out", *extra)
    assert e.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()  # refused before any training
