"""The suite and the commands do not depend on the user's environment: a ``--data-dir`` the user names is
used or refused (one line, exit 2), never replaced by ``$PYRO_VAEGAP_DATA``, and the tests pass with that
variable set."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import USER_ENV
from pyro_vaegap.data import DATA_ENV

REPO = Path(__file__).resolve().parents[1]


def _fake_mnist(folder: Path) -> Path:
    """A binarized-MNIST file that would be read if the named directory were silently replaced."""
    folder.mkdir(parents=True, exist_ok=True)
    bits = np.packbits(np.random.default_rng(0).integers(0, 2, size=(50, 784), dtype=np.uint8), axis=1)
    np.savez(folder / "binarized_mnist.npz", train=bits, valid=bits[:10], test=bits[:10])
    return folder


def test_fixture_hides_the_users_environment():
    assert all(name not in os.environ for name in USER_ENV)


def test_train_refuses_a_named_data_dir_that_does_not_exist(tmp_path, monkeypatch, capsys):
    from pyro_vaegap.cli import main

    monkeypatch.setenv(DATA_ENV, str(_fake_mnist(tmp_path / "env")))
    run = tmp_path / "run"
    argv = ["train", "--run-dir", str(run), "--dataset", "binarized_mnist", "--data-dir", str(tmp_path / "nodata"),
            "--epochs", "1", "--latent-dim", "2", "--hidden", "8", "--quiet"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(tmp_path / "nodata") in err and str(tmp_path / "env") not in err
    assert not run.exists()  # nothing half-written
    # the same directory, once it holds the data, is the one read and the one recorded
    _fake_mnist(tmp_path / "nodata")
    assert main(argv) == 0
    assert json.loads((run / "config.json").read_text())["config"]["data_dir"] == str(tmp_path / "nodata")


def test_experiment_refuses_a_named_data_dir_with_the_variable_set(tmp_path, monkeypatch, capsys):
    from pyro_vaegap.experiments import cremer_gaps

    monkeypatch.setenv(DATA_ENV, str(_fake_mnist(tmp_path / "env")))
    assert cremer_gaps.main(["--data-dir", str(tmp_path / "nodata"), "--out", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err.startswith("cremer_gaps: error: binarized MNIST not found")


def test_cli_debug_flag_test_passes_with_the_variable_set(tmp_path):
    """``test_cli.py::test_experiment_debug_flag`` in a fresh process whose environment names a data
    directory (it used to start a full training run there and fail)."""
    env = {**os.environ, DATA_ENV: str(_fake_mnist(tmp_path / "env")), "PYRO_VAEGAP_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "tests/test_cli.py::test_experiment_debug_flag"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "1 passed" in proc.stdout
