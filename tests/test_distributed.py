"""Sharded gap evaluation with torchrun: 2 gloo processes on CPU give the single-process report number for
number; a failing rank names itself and leaves no report; the same command then resumes."""
import json
import subprocess
import sys

import pytest

from pyro_vaegap.cli import main
from pyro_vaegap.distributed import world_from_env
from pyro_vaegap.utils import ConfigError

GAPS = ["--num-points", "6", "--iwae-samples", "40", "--elbo-samples", "40", "--ais-chains", "3", "--ais-steps", "4",
        "--ais-leapfrog", "2", "--ais-data-chunk", "2", "--data-chunk", "2", "--local-data-chunk", "2",
        "--local-samples", "3", "--local-max-steps", "40", "--local-check-every", "20", "--families", "ffg,fullcov",
        "--quiet"]


def torchrun(cwd, *args):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "pyro_vaegap.cli", "gaps", "--run-dir", "run", *GAPS, *args]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def run_and_single(tmp_path_factory):
    folder = tmp_path_factory.mktemp("dist")
    assert main(["train", "--run-dir", str(folder / "run"), "--dataset", "digits", "--epochs", "2", "--latent-dim",
                 "3", "--hidden", "16", "--guide-options", '{"hidden": 16}', "--quiet"]) == 0
    assert main(["gaps", "--run", str(folder / "run"), *GAPS, "--out", str(folder / "single")]) == 0
    return folder, json.loads((folder / "single.json").read_text())


def test_two_ranks_give_the_single_process_report(run_and_single):
    folder, single = run_and_single
    proc = torchrun(folder, "--out", "sharded")
    assert proc.returncode == 0, proc.stderr[-3000:]
    sharded = json.loads((folder / "sharded.json").read_text())
    assert sharded["per_point"] == single["per_point"]  # every value of every datapoint, exactly
    assert sharded["meta"]["ranks"] == 2 and not (folder / "sharded.partial").exists()


def test_a_failing_rank_names_itself_and_the_command_resumes(run_and_single):
    """Chunk 1 of the last stage belongs to rank 1; a damaged file there stops rank 1 with its rank in the
    error, torchrun stops rank 0, no report is written, and the finished pieces (both ranks' first ones)
    are kept. With the damaged file removed, the same command completes with the single-process numbers."""
    folder, single = run_and_single
    partial = folder / "resumed.partial"
    partial.mkdir()
    (partial / "local-fullcov-1.pt").write_bytes(b"not a checkpoint")
    proc = torchrun(folder, "--out", "resumed")
    assert proc.returncode != 0
    assert "vaegap [rank 1/2]: error: the checkpoint piece" in proc.stderr and "local-fullcov-1.pt" in proc.stderr
    assert not (folder / "resumed.json").exists()
    assert all((partial / f).exists() for f in ("manifest.json", "importance-0.pt", "importance-1.pt"))
    (partial / "local-fullcov-1.pt").unlink()
    proc = torchrun(folder, "--out", "resumed")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads((folder / "resumed.json").read_text())["per_point"] == single["per_point"]


@pytest.mark.parametrize("env,message", [({"RANK": "2", "WORLD_SIZE": "2"}, "RANK=2 is not allowed with WORLD_SIZE=2"),
                                         ({"RANK": "a", "WORLD_SIZE": "2"}, "must be integers")])
def test_a_bad_launcher_environment_is_refused(monkeypatch, env, message):
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(ConfigError, match=message):
        world_from_env()
