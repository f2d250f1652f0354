"""An interrupted gap evaluation resumes to exactly the numbers of an uninterrupted one."""
import json

import numpy as np
import pytest
import torch

import pyro_vaegap.gaps as gaps_mod
from pyro_vaegap.cli import main
from pyro_vaegap.gaps import GapConfig, Interrupted, gap_report
from pyro_vaegap.models import BernoulliVAE
from pyro_vaegap.registry import get_family

CFG = dict(families=("ffg", "flow"), family_options={"flow": {"flow_hidden": 8}}, iwae_samples=200,
           elbo_samples=200, data_chunk=4, ais_chains=5, ais_steps=20, ais_leapfrog=2, ais_data_chunk=3,
           local_samples=5, local_lr=1e-2, local_max_steps=200, local_check_every=20, local_patience=3)


def setup():
    torch.manual_seed(0)
    model = BernoulliVAE(12, 2, 8)
    guide = get_family("ffg").make_amortized(model, hidden=8)
    x = (torch.rand(10, 12) < 0.4).float()
    return model, guide, x


def interrupt_after(monkeypatch, target: str, calls: int):
    """Make the ``calls``-th call of ``gaps.<target>`` raise KeyboardInterrupt (as Ctrl-C would)."""
    original = getattr(gaps_mod, target)
    count = {"n": 0}

    def wrapper(*args, **kwargs):
        count["n"] += 1
        if count["n"] == calls:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(gaps_mod, target, wrapper)


def interrupt_local_after_saves(monkeypatch, saves: int):
    """Local optimization saves its state at every check and is interrupted after ``saves`` of them."""
    original = gaps_mod.optimize_local

    def wrapper(*args, save_state=None, **kwargs):
        count = {"n": 0}

        def save(state):
            save_state(state)
            count["n"] += 1
            if count["n"] == saves:
                raise KeyboardInterrupt

        return original(*args, save_state=save, **{**kwargs, "save_every": 0.0})

    monkeypatch.setattr(gaps_mod, "optimize_local", wrapper)


@pytest.fixture(scope="module")
def reference():
    model, guide, x = setup()
    return gap_report(model, guide, x, GapConfig(**CFG), progress=False, log=None)


@pytest.mark.parametrize("where", ["ais", "local", "score"])
def test_interrupted_evaluation_resumes_to_the_same_numbers(tmp_path, monkeypatch, where, reference):
    model, guide, x = setup()
    folder = tmp_path / "partial"
    with monkeypatch.context() as m:
        if where == "ais":
            interrupt_after(m, "ais", 3)                 # the third of four AIS pieces
        elif where == "local":
            interrupt_local_after_saves(m, 5)            # mid-way through the FFG optimization
        else:
            interrupt_after(m, "importance_sample", 5)   # scoring the flow's q*, after the FFG's
        with pytest.raises(Interrupted, match=r"interrupted during \[\d/4\].*rerun the same command to resume"):
            gap_report(model, guide, x, GapConfig(**CFG), progress=False, log=None, checkpoint=folder)
    assert any(folder.glob("*.pt"))
    spent = {p.stem: torch.load(p, weights_only=False)["seconds"] for p in folder.glob("*.pt")}
    resumed = gap_report(model, guide, x, GapConfig(**CFG), progress=False, log=None, checkpoint=folder)
    assert resumed.per_point.keys() == reference.per_point.keys()
    for k, v in reference.per_point.items():
        assert np.array_equal(v, resumed.per_point[k], equal_nan=True), k
    # the recorded compute time includes what the interrupted process spent, not only the resumed one's
    seconds = resumed.meta["seconds"]
    assert seconds.keys() == reference.meta["seconds"].keys()
    assert seconds["importance"] == pytest.approx(spent["importance-0"] + spent["importance-1"] + spent["importance-2"])
    if where == "local":
        assert seconds["local-ffg"] > spent["local-ffg-0-state"] > 0


def test_a_checkpoint_of_other_inputs_is_refused(tmp_path):
    model, guide, x = setup()
    folder = tmp_path / "partial"
    gap_report(model, guide, x, GapConfig(**{**CFG, "families": ("ffg",), "family_options": {}}), progress=False, log=None, checkpoint=folder)
    with pytest.raises(gaps_mod.ConfigError, match="different config"):
        gap_report(model, guide, x, GapConfig(**{**CFG, "families": ("ffg",), "family_options": {}, "ais_steps": 30}), progress=False,
                   log=None, checkpoint=folder)
    with pytest.raises(gaps_mod.ConfigError, match="different data"):
        gap_report(model, guide, x[:9], GapConfig(**{**CFG, "families": ("ffg",), "family_options": {}}), progress=False, log=None,
                   checkpoint=folder)


def test_gaps_command_interrupted_then_rerun(tmp_path, monkeypatch, capsys):
    """Ctrl-C in `vaegap gaps`: one line naming the stage and how to resume, exit status 2, no report;
    the same command again finishes, removes the checkpoint folder, and equals an uninterrupted run."""
    run = tmp_path / "run"
    assert main(["train", "--run-dir", str(run), "--dataset", "digits", "--epochs", "1", "--latent-dim", "2",
                 "--hidden", "8", "--quiet"]) == 0
    args = ["gaps", "--run", str(run), "--num-points", "6", "--iwae-samples", "50", "--elbo-samples", "50",
            "--ais-chains", "4", "--ais-steps", "10", "--ais-leapfrog", "2", "--ais-data-chunk", "2",
            "--local-samples", "3", "--local-max-steps", "200", "--local-check-every", "20", "--quiet",
            "--workers", "1"]  # one process: the interruption is patched into this one
    assert main(args + ["--out", str(tmp_path / "ref")]) == 0
    with monkeypatch.context() as m:
        interrupt_after(m, "ais", 2)
        assert main(args + ["--out", str(tmp_path / "rep")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("vaegap: error: interrupted during [2/4] AIS") and "\n" not in err
    assert not (tmp_path / "rep.json").exists() and (tmp_path / "rep.partial").is_dir()
    assert main(args + ["--out", str(tmp_path / "rep")]) == 0
    assert not (tmp_path / "rep.partial").exists()
    ref, rep = (json.loads((tmp_path / f"{n}.json").read_text())["per_point"] for n in ("ref", "rep"))
    assert ref == rep
    assert main(args + ["--out", str(tmp_path / "rep")]) == 2  # a finished report is not overwritten...
    assert "already holds a finished report" in capsys.readouterr().err
    assert main(args + ["--out", str(tmp_path / "rep"), "--overwrite"]) == 0  # ...unless asked
