"""The experiment harness (pyro_vaegap.harness): profiles as data, results pages, run reuse, evaluation points."""
import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from pyro_vaegap.data import DataError, evaluation_rows, seeded_subset
from pyro_vaegap.harness import (Profiles, Setting, finished_run, make_parser, paper_table, parse_args, train_run,
                                 write_results, Progress)
from pyro_vaegap.train import TrainConfig, train

PROFILES = Profiles({"quick": {"epochs": 2, "points": 3}, "cpu": {"epochs": 20, "points": 50}},
                    {"epochs": Setting(int, "epochs"), "points": Setting(int, "points")}, default="cpu")


def test_profiles_fill_what_the_command_line_leaves_out():
    p = make_parser("toy", "a toy", PROFILES)
    args = parse_args(p, ["--epochs", "7"], profiles=PROFILES)
    assert (args.profile, args.epochs, args.points) == ("cpu", 7, 50)
    args = parse_args(p, ["--quick"], profiles=PROFILES)
    assert (args.profile, args.epochs, args.points) == ("quick", 2, 3)
    assert PROFILES.argv("quick") == ["--epochs", "2", "--points", "3"]


def test_bad_profile_is_one_line_exit_2(capsys):
    p = make_parser("toy", "a toy", PROFILES)
    with pytest.raises(SystemExit) as e:
        parse_args(p, ["--profile", "gpu"], profiles=PROFILES)
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1 and err.startswith("toy: error: argument --profile")


def test_results_page_reads_as_written_by_a_person(tmp_path):
    args = SimpleNamespace(device=torch.device("cpu"), out=str(tmp_path), seed=0, quiet=False, threads=None,
                           debug=False, compare=["a=x.json", "b=y.json"], runs=None)
    write_results(tmp_path, "toy", args, {"x": 1.0}, "**Table**\n\n| a |\n|---|\n| 1 |\n", None,
                  reused="the 2 gap reports named by --compare")
    md = (tmp_path / "results.md").read_text()
    assert "Wall time" not in md and "device(type=" not in md and "{'" not in md
    assert "assembles results computed earlier (the 2 gap reports named by --compare)" in md
    assert "| `--device` | cpu |" in md and "| `--compare` | `a=x.json`, `b=y.json` |" in md
    assert "`--threads`" not in md  # how the command ran, not what it computed
    lines = md.splitlines()
    assert lines[0] == "# toy" and lines[5] == "**Table**"  # the docs include the page from its 6th line
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["config"]["device"] == "cpu" and saved["wall_seconds"] is None and "commit" in saved["git"]
    write_results(tmp_path, "toy", args, {}, "x\n", 3600 * 5.04)
    assert "Computed in 5.0 h." in (tmp_path / "results.md").read_text()


def test_paper_table_shows_ours_beside_the_paper():
    md = paper_table([("log p(x)", -89.80, (-85.79, 5.84)), ("gap", 1.43, 2.32), ("new", None, 0.5)])
    assert "| log p(x) | -89.80 | -85.79 ± 5.84 | +4.01 |" in md
    assert "| gap | 1.43 | 2.32 | +0.89 |" in md and "| new | — | 0.50 | — |" in md


def test_evaluation_rows_first_or_random():
    assert evaluation_rows(10, 4, 0, "first").tolist() == [0, 1, 2, 3]
    assert torch.equal(evaluation_rows(10, 4, 3, "random"), seeded_subset(10, 4, 3))
    with pytest.raises(DataError, match="'middle' are not allowed: expected one of random, first"):
        evaluation_rows(10, 4, 0, "middle")
    with pytest.raises(DataError, match="out of range"):
        evaluation_rows(10, 11, 0, "first")


def test_finished_run_is_reused_wherever_its_data_was_read(tmp_path):
    """A finished run of the same config is loaded, not trained again, even when its data folder was named
    differently; a run of another config is not reused."""
    cfg = TrainConfig(dataset="digits", latent_dim=2, hidden=8, guide_options={"hidden": 8}, epochs=1, batch_size=200)
    train(cfg, tmp_path / "run", progress=False)
    before = (tmp_path / "run" / "checkpoint.pt").stat().st_mtime_ns
    other_dir = TrainConfig(**{**cfg.to_dict(), "data_dir": str(tmp_path / "elsewhere")})
    assert finished_run(other_dir, tmp_path / "run")
    assert not finished_run(TrainConfig(**{**cfg.to_dict(), "epochs": 2}), tmp_path / "run")
    assert not finished_run(TrainConfig(**{**cfg.to_dict(), "lr": 1e-4}), tmp_path / "run")
    model, guide, _ = train_run(other_dir, tmp_path / "run", Progress(True))
    assert (tmp_path / "run" / "checkpoint.pt").stat().st_mtime_ns == before and not model.training


def test_cremer_paper_profile_is_the_authors_protocol():
    """--profile paper trains exactly as the two authors'-protocol runs were started (their config.json, field for
    field) and evaluates the first 1000 training images with the paper's estimators."""
    from pyro_vaegap.studies import cremer

    for guide in ("ffg", "flow"):
        args = cremer.build_parser().parse_args(["--profile", "paper", "--guide", guide, "--data-dir", "/data"])
        cremer.apply_profile(args)
        tcfg, gcfg = cremer.configs(args)
        expected = dict(dataset="binarized_mnist", data_dir="/data", num_train=None, train_split="train+valid",
                        valid_split="test", holdout_fraction=0.1, keep_best=False, model="bernoulli", latent_dim=50, hidden=200, decoder_layers=2,
                        activation="elu", dense=False, arch="mlp", variance="network", sigma2=1.0, pixelcnn_layers=5,
                        pixelcnn_channels=32, guide=guide, guide_options={}, objective="elbo", num_particles=1,
                        anneal="entropy", anneal_epochs=400, free_bits=0.0, alpha=None, lambda_=None,
                        divergence=None, mmd_kernel=None, mmd_scales=None, disc_lr=None, disc_steps=None,
                        disc_hidden=None, epochs=3280, batch_size=100, lr=1e-3, lr_schedule="burda", adam_eps=1e-4,
                        optimizer="adam", clip_value=None, monitor_mmd=None,
                        micro_batches=None, valid_samples=1, num_valid=2000, seed=0, decoder_from=None)
        assert tcfg.to_dict() == expected
        assert (args.eval_split, args.eval_points, args.num_points) == ("train", "first", 1000)
        assert (gcfg.families, gcfg.ais_chains, gcfg.ais_steps, gcfg.ais_leapfrog, gcfg.iwae_samples,
                gcfg.local_samples, gcfg.local_check_every, gcfg.local_patience) == (("ffg", "flow"), 100, 500, 10,
                                                                                      5000, 100, 100, 10)
    args = cremer.build_parser().parse_args(["--profile", "paper", "--epochs", "5", "--eval-split", "test",
                                             "--eval-points", "random"])
    cremer.apply_profile(args)  # a given option overrides the profile's value
    assert (args.epochs, args.eval_split, args.eval_points, args.adam_eps) == (5, "test", "random", 1e-4)


def test_cremer_gaps_evaluates_the_first_training_points(tmp_path, mnist_dir):
    """--eval-split train --eval-points first: the report holds the split's first rows, and says so."""
    from pyro_vaegap.experiments import cremer_gaps

    argv = ["--quick", "--num-train", "200", "--data-dir", str(mnist_dir), "--run-dir", str(tmp_path / "run"),
            "--out", str(tmp_path / "gaps"), "--num-points", "2", "--families", "ffg", "--no-ais", "--threads", "1",
            "--eval-split", "train", "--eval-points", "first", "--quiet", "--iwae-samples", "20"]
    assert cremer_gaps.main(argv) == 0
    rep = json.loads((tmp_path / "gaps.json").read_text())
    assert rep["meta"]["evaluation_points"] == "the first 2 training points"
    assert "the first 2 training points" in (tmp_path / "gaps.md").read_text()
    assert len(rep["per_point"]["log_px"]) == 2


def test_old_import_paths_are_the_moved_modules():
    """Modules grouped into layer packages keep their old names: the same module objects (so a monkeypatch or an
    isinstance check through either name sees the same thing), and pyro_vaegap.train re-exports both parts."""
    import importlib

    import pyro_vaegap

    moved = {"networks": "models.networks", "infovae": "objectives.infovae", "distributed": "training.distributed",
             "sweep": "harness.sweep", "guide": "contract.guide", "registry": "contract.registry",
             "user_model": "contract.user_model", "traces": "estimators.traces", "ais": "estimators.ais",
             "grid": "estimators.grid", "grid_windows": "estimators.grid_windows", "local": "estimators.local",
             "keyed_noise": "estimators.keyed_noise", "aggregate": "estimators.aggregate", "gaps": "report.compute",
             "papers": "report.papers", "compression": "tutorial.compression"}
    assert pyro_vaegap.MOVED == {f"pyro_vaegap.{o}": f"pyro_vaegap.{n}" for o, n in moved.items()}
    for old, new in moved.items():
        home = importlib.import_module(f"pyro_vaegap.{new}")
        assert importlib.import_module(f"pyro_vaegap.{old}") is home, old
        assert getattr(importlib.import_module("pyro_vaegap"), old) is home, old  # from pyro_vaegap import <old>
        assert home.__spec__.name == f"pyro_vaegap.{new}", old  # the module keeps its own spec
        assert not (Path(pyro_vaegap.__file__).parent / f"{old}.py").exists(), old  # no stub left at the old path
    # the old module names that are now layer packages re-export what they held
    from pyro_vaegap import contract, estimators

    assert estimators.importance_sample is estimators.importance.importance_sample
    assert estimators.iwae_bounds is estimators.importance.iwae_bounds
    assert contract.inspect_model is contract.model.inspect_model and contract.call is contract.model.call
    # python -m with an old name runs the moved module
    r = subprocess.run([sys.executable, "-m", "pyro_vaegap.papers", "--list"], capture_output=True, text=True)
    assert r.returncode == 0 and "cremer2018:2" in r.stdout, r.stderr
    from pyro_vaegap import runs, train, training

    assert train.TrainConfig is runs.TrainConfig and train.load_run is runs.load_run
    assert train.train is training.train and train.training_step is training.steps.training_step
