"""The ``vaegap`` command and the experiment module: real runs on tiny settings, help texts, and bad input
(the full table of bad inputs is ``tests/test_bad_inputs.py``).

``python tests/test_cli.py --write-docs`` pastes the real ``--help`` of every command into ``docs/cli.rst``;
:func:`test_cli_docs_show_the_real_help` fails when they differ.
"""
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from pyro_vaegap.cli import build_parser, main

CLI_DOCS = Path(__file__).resolve().parents[1] / "docs" / "cli.rst"


def test_quickstart_writes_gap_table(tmp_path, capsys):
    assert main(["quickstart", "--out", str(tmp_path), "--epochs", "3", "--num-points", "5", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "Approximation gap" in out and "Amortization gap" in out
    rep = json.loads((tmp_path / "gaps.json").read_text())
    assert rep["config"]["seed"] == 0 and "torch" in rep["meta"]["versions"]
    assert rep["meta"]["train_config"]["dataset"] == "digits"
    assert len(rep["per_point"]["log_px"]) == 5
    assert rep["meta"]["log_px_estimator"] == "ais" and rep["meta"]["git"]["commit"]
    assert (tmp_path / "gaps.md").read_text().startswith("| |")


def test_train_then_gaps_command(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--run-dir", str(run), "--dataset", "digits", "--epochs", "2", "--latent-dim", "3",
                 "--hidden", "16", "--guide-options", '{"hidden": 16}', "--quiet"]) == 0
    assert main(["gaps", "--run", str(run), "--num-points", "4", "--iwae-samples", "50", "--elbo-samples", "50",
                 "--ais-chains", "4", "--ais-steps", "5", "--ais-leapfrog", "2", "--local-samples", "3",
                 "--local-max-steps", "100", "--local-check-every", "20", "--families", "ffg,fullcov",
                 "--out", str(tmp_path / "rep"), "--quiet"]) == 0
    rep = json.loads((tmp_path / "rep.json").read_text())
    assert {"local:ffg", "local:fullcov", "ais", "iwae", "psis_khat", "approximation:fullcov"} <= set(rep["per_point"])
    assert "L[q*_FULLCOV]" in capsys.readouterr().out
    assert main(["render", str(tmp_path / "rep.json")]) == 0  # the table, regenerated from the JSON
    assert capsys.readouterr().out == (tmp_path / "rep.md").read_text()


@pytest.mark.parametrize("argv,message", [
    (["train", "--run-dir", "{tmp}/r", "--epochs", "0"], "epochs=0 is not allowed"),
    (["train", "--run-dir", "{tmp}/r", "--dataset", "cifar100"], "cifar100"),
    (["train", "--run-dir", "{tmp}/r", "--config", "{tmp}/missing.json"], "no such file"),
    (["gaps", "--run", "{tmp}/nothing"], "no checkpoint.pt"),
    (["train", "--run-dir", "{tmp}/r", "--guide", "nope", "--epochs", "1"], "unknown guide family 'nope'"),
])
def test_bad_input_clear_error_nonzero_exit(tmp_path, capsys, argv, message):
    argv = [a.format(tmp=tmp_path) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.startswith("vaegap: error:")
    assert not (tmp_path / "r" / "checkpoint.pt").exists()


def test_bad_gap_options_leave_no_result_file(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--run-dir", str(run), "--dataset", "digits", "--epochs", "1", "--latent-dim", "2",
                 "--hidden", "8", "--quiet"]) == 0
    for bad, msg in ((["--families", "ffg,nope"], "unknown guide family 'nope'"),
                     (["--ais-schedule", "cosine"], "ais_schedule='cosine'"),
                     (["--num-points", "301"], "expected 1..300"), (["--num-points", "0"], "expected 1..300")):
        assert main(["gaps", "--run", str(run), "--out", str(tmp_path / "rep"), "--quiet", "--iwae-samples", "10",
                     "--elbo-samples", "10", "--no-ais", "--local-max-steps", "10", *bad]) == 2
        assert msg in capsys.readouterr().err
        assert not (tmp_path / "rep.json").exists() and not (tmp_path / "rep.md").exists()
    assert not list(tmp_path.glob(".rep*"))  # no temporary files left behind


def test_json_config_file_and_console_script(tmp_path):
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"dataset": "digits", "epochs": 1, "latent_dim": 2, "hidden": 8, "bogus": 1}))
    proc = subprocess.run([sys.executable, "-m", "pyro_vaegap.cli", "train", "--run-dir", str(tmp_path / "r"),
                           "--config", str(cfg), "--quiet"], capture_output=True, text=True)
    assert proc.returncode == 2 and "unknown TrainConfig keys ['bogus']" in proc.stderr


def test_experiment_modules_run_from_the_repository_root_and_installed():
    """``python -m experiments.<name>`` from the repository root (the design card's layout) and
    ``python -m pyro_vaegap.experiments.<name>`` from anywhere (the installed namespace) are the
    same module."""
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    for module, cwd in (("experiments.cremer_gaps", repo), ("pyro_vaegap.experiments.cremer_gaps", "/")):
        r = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True, cwd=cwd)
        assert r.returncode == 0 and "Table 2" in r.stdout, r.stderr


def test_experiment_module_quick(tmp_path, mnist_dir, monkeypatch):
    """--quick trains 2 epochs into its own run folder and reports every row of Table 2 with the
    paper's numbers beside the comparable ones."""
    from pyro_vaegap.experiments.cremer_gaps import QUICK_RUN_DIR
    from pyro_vaegap.experiments.cremer_gaps import main as exp_main

    monkeypatch.chdir(tmp_path)
    assert exp_main(["--quick", "--data-dir", str(mnist_dir), "--out", str(tmp_path / "gaps"),
                     "--num-points", "3", "--threads", "1"]) == 0
    rep = json.loads((tmp_path / "gaps.json").read_text())
    md = (tmp_path / "gaps.md").read_text()
    assert rep["meta"]["train_config"]["epochs"] == 2 and rep["meta"]["train_config"]["num_train"] == 2000
    assert (tmp_path / QUICK_RUN_DIR / "checkpoint.pt").exists()
    assert "| -89.80 |" in md and "| -90.80 |" in md and "Our settings that differ" in md
    assert {"local:ffg", "local:flow"} <= set(rep["per_point"])
    assert rep["meta"]["train_config"]["latent_dim"] == 50


def test_bdmc_command(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--run-dir", str(run), "--dataset", "digits", "--epochs", "2", "--latent-dim", "2",
                 "--hidden", "16", "--quiet"]) == 0
    assert main(["bdmc", "--run", str(run), "--num-points", "3", "--ais-chains", "5", "--ais-steps", "20",
                 "--ais-leapfrog", "3", "--quiet", "--out", str(tmp_path / "b.json")]) == 0
    out = json.loads((tmp_path / "b.json").read_text())
    assert len(out["per_point"]["gap"]) == 3 and out["summary"]["num_points"] == 3
    assert {"mean_abs_gap", "max_abs_gap", "crossings", "sandwich_holds"} <= set(out["summary"])
    assert out["meta"]["git"]["commit"] and out["config"]["ais_step_size"] == "pilot"
    printed = capsys.readouterr().out
    assert "BDMC on 3 simulated points" in printed and "|upper − lower| mean" in printed


def test_single_point_report_saves_undefined_errors_as_null(tmp_path):
    run = tmp_path / "run"
    assert main(["train", "--run-dir", str(run), "--dataset", "digits", "--epochs", "1", "--latent-dim", "2",
                 "--hidden", "8", "--quiet"]) == 0
    assert main(["gaps", "--run", str(run), "--num-points", "1", "--iwae-samples", "20", "--elbo-samples", "20",
                 "--no-ais", "--local-max-steps", "20", "--local-check-every", "10", "--quiet",
                 "--out", str(tmp_path / "one")]) == 0
    rep = json.loads((tmp_path / "one.json").read_text())
    assert rep["summary"]["inference"]["se"] is None and rep["summary"]["inference"]["mean"] is not None


def test_train_download_option(tmp_path, monkeypatch, capsys):
    """--download reaches torchvision (faked here: no network in tests); without it the message
    suggests it, and the option it suggests exists."""
    import numpy as np
    import torch
    import torchvision.datasets

    class FakeFashionMNIST:
        def __init__(self, root, train=True, download=False):
            if not download and not (Path(root) / "FashionMNIST").exists():
                raise RuntimeError("Dataset not found. You can use download=True to download it")
            (Path(root) / "FashionMNIST").mkdir(exist_ok=True)
            rng = np.random.default_rng(int(train))
            self.data = torch.from_numpy(rng.integers(0, 256, size=(12 if train else 6, 28, 28), dtype=np.uint8))

    monkeypatch.setattr(torchvision.datasets, "FashionMNIST", FakeFashionMNIST)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("PYRO_VAEGAP_DATA", raising=False)
    argv = ["train", "--run-dir", str(tmp_path / "run"), "--dataset", "fashion_mnist", "--data-dir",
            str(tmp_path / "data"), "--epochs", "1", "--latent-dim", "2", "--hidden", "8", "--quiet"]
    assert main(argv) == 2
    assert "pass --download" in capsys.readouterr().err and not (tmp_path / "run").exists()
    assert main(argv + ["--download"]) == 0
    assert (tmp_path / "data" / "fashion_mnist_binarized.npz").is_file()


# ------------------------------------------------------------------------------------------------
# Help texts and docs/cli.rst
# ------------------------------------------------------------------------------------------------


def help_texts() -> dict:
    """``{"vaegap": ..., "vaegap train": ..., ...}``: the ``--help`` of every command at 100 columns."""
    import os

    old = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "100"
    try:
        parser = build_parser()
        out = {"vaegap": parser.format_help()}
        out.update({f"vaegap {name}": sub.format_help() for name, sub in parser.commands.items()})
    finally:
        if old is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = old
    return out


def render_cli_docs(text: str) -> str:
    """``docs/cli.rst`` with every ``.. BEGIN HELP vaegap X`` / ``.. END HELP vaegap X`` block holding the
    real ``vaegap X --help``."""
    helps = help_texts()

    def block(m):
        body = "\n".join(("   " + line).rstrip() for line in helps[m.group(1)].rstrip("\n").splitlines())
        return f".. BEGIN HELP {m.group(1)}\n\n.. code-block:: text\n\n{body}\n\n.. END HELP {m.group(1)}\n"
    return re.sub(r"\.\. BEGIN HELP (vaegap(?: [\w-]+)?)\n.*?\.\. END HELP \1\n", block, text, flags=re.S)


def test_cli_docs_show_the_real_help():
    """Every command's --help is in docs/cli.rst exactly (argparse's layout changes between Python versions:
    compared on the version noted in the file)."""
    text = CLI_DOCS.read_text()
    noted = re.search(r"--write-docs`` with Python (\d+\.\d+)", text)
    assert set(re.findall(r"\.\. BEGIN HELP (vaegap(?: [\w-]+)?)\n", text)) == set(help_texts())
    if noted and noted.group(1) != f"{sys.version_info[0]}.{sys.version_info[1]}":
        pytest.skip(f"docs/cli.rst was generated with Python {noted.group(1)}")
    assert text == render_cli_docs(text), "docs/cli.rst is stale: run python tests/test_cli.py --write-docs"


def test_help_lists_every_command_and_choice_without_markup():
    helps = help_texts()
    top = helps["vaegap"]
    for name in ("train", "gaps", "quickstart", "bdmc", "render", "families"):
        assert re.search(rf"^    {name} +\S", top, flags=re.M), f"{name} missing from vaegap --help"
    from pyro_vaegap.train import ANNEALING, LR_SCHEDULES, MODELS, OBJECTIVES

    train_help = " ".join(helps["vaegap train"].split())
    for choice in (*MODELS, *OBJECTIVES, *ANNEALING, *LR_SCHEDULES):
        assert choice in train_help, choice
    assert "(default: ffg)" in " ".join(helps["vaegap gaps"].split())  # not ('ffg',)
    for name, text in helps.items():
        assert "`" not in text and "('" not in text, f"raw markup or a Python tuple in {name} --help"
        assert "--debug" in text or name == "vaegap", name


def test_debug_keeps_the_traceback_and_bugs_are_never_hidden(tmp_path, monkeypatch, capsys):
    """--debug re-raises a user error; an exception that is not a user error propagates without it."""
    from pyro_vaegap.utils import ConfigError

    with pytest.raises(ConfigError, match="lr=inf"):
        main(["train", "--run-dir", str(tmp_path / "r"), "--lr", "inf", "--debug"])
    import pyro_vaegap.training.loop

    monkeypatch.setattr(pyro_vaegap.training.loop, "training_step", lambda *a, **k: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        main(["train", "--run-dir", str(tmp_path / "r"), "--epochs", "1", "--latent-dim", "2", "--hidden", "8",
              "--quiet"])
    assert "error" not in capsys.readouterr().err


def test_experiment_debug_flag(capsys):
    from pyro_vaegap.experiments import cremer_gaps, tutorial_mse
    from pyro_vaegap.harness import run_main
    from pyro_vaegap.data import DataError

    with pytest.raises(DataError):
        cremer_gaps.main(["--data-dir", "/nonexistent/nodata", "--debug"])
    assert cremer_gaps.main(["--data-dir", "/nonexistent/nodata"]) == 2
    assert capsys.readouterr().err.startswith("cremer_gaps: error: binarized MNIST not found")
    with pytest.raises(SystemExit) as e:  # a bad option is still a one-line parser error with --debug
        run_main(tutorial_mse.main, ["--toy-epochs", "-1", "--debug"])
    assert e.value.code == 2 and capsys.readouterr().err.count("\n") == 1


if __name__ == "__main__":
    if sys.argv[1:] != ["--write-docs"]:
        sys.exit("usage: python tests/test_cli.py --write-docs")
    text = CLI_DOCS.read_text()
    text = re.sub(r"(pasted by\n``python tests/test_cli.py --write-docs``)(?: with Python \d+\.\d+)?",
                  rf"\1 with Python {sys.version_info[0]}.{sys.version_info[1]}", text)
    CLI_DOCS.write_text(render_cli_docs(text))
    print(f"wrote {CLI_DOCS}")
