"""Sweeps: a grid planned as one command per job, each job run alone (as a scheduler would), the results merged,
with missing jobs reported and never presented as a whole sweep."""
import json
import statistics
import sys

import pytest

from pyro_vaegap.cli import main
from pyro_vaegap.sweep import merge, parse_grid, plan
from pyro_vaegap.utils import ConfigError

# a stand-in experiment: writes OUT/results.json from its options, fails for --width 0
JOB = """
import argparse, json, pathlib, sys
p = argparse.ArgumentParser(); p.add_argument("--seed", type=int); p.add_argument("--width", type=int)
p.add_argument("--out"); a = p.parse_args()
if a.width == 0:
    sys.exit("width 0 is not allowed")
pathlib.Path(a.out).mkdir(parents=True)
pathlib.Path(a.out, "results.json").write_text(json.dumps({"results": {"score": a.width * 10 + a.seed ** 2}}))
"""


@pytest.fixture
def sweep(tmp_path):
    script = tmp_path / "job.py"
    script.write_text(JOB)
    assert main(["sweep-plan", "--out", str(tmp_path / "s"), "--grid", "width=1,2", "--grid", "seed=0,1,2", "--",
                 sys.executable, str(script)]) == 0
    return tmp_path / "s"


def test_plan_run_and_merge(sweep, capsys):
    lines = (sweep / "jobs.txt").read_text().splitlines()
    assert len(lines) == 6 and lines[0].endswith(f"--width 1 --seed 0 --out {sweep.resolve()}/jobs/width=1_seed=0")
    for job in range(1, 6):  # the last job is left out: the merge must say so
        assert main(["sweep-run", str(sweep), "--job", str(job)]) == 0
    m = merge(sweep, fields=["results.score"])
    assert not m["complete"] and m["missing"] == ["width=2_seed=2"]
    assert "INCOMPLETE: 1 of 6 jobs" in (sweep / "merged.md").read_text()
    assert main(["sweep-run", str(sweep), "--job", "6"]) == 0
    capsys.readouterr()
    assert main(["sweep-merge", str(sweep), "--field", "results.score", "--over", "seed"]) == 0
    merged = json.loads((sweep / "merged.json").read_text())
    assert merged["complete"] and not merged["missing"]
    # mean ± SD over the seeds, against the scores the jobs wrote
    for width in (1, 2):
        scores = [width * 10 + s ** 2 for s in (0, 1, 2)]
        row = f"| {width} | 3 | {statistics.mean(scores):.3f} ± {statistics.stdev(scores):.3f} (n=3) |"
        assert row in (sweep / "merged.md").read_text()


def test_job_placeholder_gives_each_job_its_own_folder(tmp_path):
    p = plan(tmp_path / "s", ["prog", "--run-dir", "{job}/run"], parse_grid(["seed=0,1"]), out_suffix="/gaps")
    for job, seed in zip(p["jobs"], "01"):
        folder = f"{(tmp_path / 's').resolve()}/jobs/seed={seed}"
        assert job["command"] == f"prog --run-dir {folder}/run --seed {seed} --out {folder}/gaps"


def test_a_failing_job_reports_its_status_and_leaves_no_results(tmp_path):
    script = tmp_path / "job.py"
    script.write_text(JOB)
    plan(tmp_path / "s", [sys.executable, str(script)], parse_grid(["width=0", "seed=1"]))
    assert main(["sweep-run", str(tmp_path / "s"), "--job", "1"]) == 2
    assert merge(tmp_path / "s", fields=["results.score"])["missing"] == ["width=0_seed=1"]


@pytest.mark.parametrize("args,message", [
    (["--grid", "seed"], "expected OPTION=V1,V2"),
    (["--grid", "seed=0,,1"], "expected OPTION=V1,V2"),
    (["--grid", "seed=0", "--grid", "seed=1"], "given twice"),
    (["--grid", "seed=0", "--", "prog", "--seed", "3"], "the command sets --seed itself"),
    (["--grid", "seed=0", "--", "prog", "--out=x"], "the command sets --out=x itself"),
    (["--grid", "seed=0"], "no command to sweep"),
])
def test_bad_plans_are_refused(tmp_path, capsys, args, message):
    if "--" not in args and message != "no command to sweep":
        args = [*args, "--", "prog"]
    assert main(["sweep-plan", "--out", str(tmp_path / "s"), *args]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "s" / "sweep.json").exists()


def test_another_plan_in_the_folder_is_refused_and_bad_jobs_are_named(sweep, capsys):
    with pytest.raises(ConfigError, match="holds another sweep"):
        plan(sweep, ["prog"], parse_grid(["seed=0"]))
    assert main(["sweep-run", str(sweep), "--job", "7"]) == 2
    assert "--job 7 is not allowed: the sweep" in capsys.readouterr().err
    assert main(["sweep-merge", str(sweep), "--over", "depth"]) == 2
    assert "--over 'depth' is not an axis" in capsys.readouterr().err
    assert main(["sweep-merge", str(sweep.parent)]) == 2
    assert "is not a sweep folder" in capsys.readouterr().err
