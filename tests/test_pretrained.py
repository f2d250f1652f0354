"""Shipped models: export a finished run, load it by name, and verify its recorded ELBO within Monte Carlo error."""
import math

import pytest
import torch

from pyro_vaegap import pretrained
from pyro_vaegap.train import TrainConfig, train
from pyro_vaegap.utils import ConfigError

SMALL = dict(dataset="digits", latent_dim=4, hidden=32, guide_options={"hidden": 32}, batch_size=100, num_train=400)


@pytest.fixture(scope="module")
def shipped(tmp_path_factory):
    root = tmp_path_factory.mktemp("pretrained")
    train(TrainConfig(epochs=3, **SMALL), root / "run", progress=False)
    pretrained.export(root / "run", "digits_small", directory=root, split="valid", num_points=200, num_samples=50)
    return root


def test_export_then_load_by_name_gives_the_runs_networks(shipped):
    from pyro_vaegap.train import load_run

    assert pretrained.available(shipped) == ["digits_small"]
    model, guide, cfg = pretrained.load("digits_small", directory=shipped)
    ref_model, ref_guide, ref_cfg = load_run(shipped / "run")
    assert cfg == ref_cfg
    for a, b in ((model, ref_model), (guide, ref_guide)):
        sa, sb = a.state_dict(), b.state_dict()
        assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    blob = pretrained.read("digits_small", shipped)
    assert "optimizer" not in blob and blob["check"]["num_points"] == 200 and blob["log"][-1]["epoch"] == 3


def test_verify_reproduces_the_recorded_elbo_and_catches_other_weights(shipped, tmp_path):
    """A fresh estimate agrees within 4 standard deviations of the difference; the same file with the decoder's
    last layer perturbed does not (its ELBO moves by many standard errors)."""
    r = pretrained.verify("digits_small", directory=shipped)
    assert r["ok"] and r["tolerance"] < 1.0 and math.isfinite(r["now"])
    blob = pretrained.read("digits_small", shipped)
    key = [k for k in blob["model"] if k.endswith("weight")][-1]
    blob["model"][key] = blob["model"][key] + 0.5 * torch.randn_like(blob["model"][key])
    torch.save(blob, tmp_path / "digits_small.pt")
    assert not pretrained.verify("digits_small", directory=tmp_path)["ok"]


def test_unknown_name_and_unfinished_run_are_refused(shipped, tmp_path):
    with pytest.raises(ConfigError, match="no shipped model named 'nope'; available: digits_small"):
        pretrained.load("nope", directory=shipped)
    train(TrainConfig(epochs=3, **SMALL), tmp_path / "run", stop_after=1, progress=False)
    with pytest.raises(ConfigError, match="not finished \\(1 of 3 epochs\\)"):
        pretrained.export(tmp_path / "run", "x", directory=tmp_path)


def test_the_check_of_a_dynamically_binarized_model_is_on_fixed_bits():
    """The training split of a dynamically binarized set is grey levels drawn anew at each use: no fixed points."""
    with pytest.raises(ConfigError, match="split='train' of 'dynamic_mnist' holds grey levels"):
        pretrained.check_points(TrainConfig(**{**SMALL, "dataset": "dynamic_mnist"}), "train", 10)
