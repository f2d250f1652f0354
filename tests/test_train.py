"""Training: objectives, annealing, the Burda schedule, checkpoints and exact resume."""
import json
import math

import pytest
import torch

from pyro_vaegap.train import BURDA_EPOCHS, TrainConfig, learning_rate, load_run, train, training_step
from pyro_vaegap.utils import ConfigError

SMALL = dict(dataset="digits", latent_dim=4, hidden=32, guide_options={"hidden": 32}, batch_size=100,
             num_train=400)


def _state(res):
    return {**{f"m.{k}": v for k, v in res.model.state_dict().items()},
            **{f"g.{k}": v for k, v in res.guide.state_dict().items()}}


def test_resume_equals_uninterrupted(tmp_path):
    cfg = TrainConfig(epochs=4, anneal="entropy", anneal_epochs=2, **SMALL)
    full = train(cfg, tmp_path / "a", progress=False)
    train(cfg, tmp_path / "b", stop_after=2, progress=False)
    resumed = train(cfg, tmp_path / "b", resume=True, progress=False)
    a, b = _state(full), _state(resumed)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert [r["train_objective"] for r in full.log] == [r["train_objective"] for r in resumed.log]
    saved = json.loads((tmp_path / "a" / "config.json").read_text())
    assert saved["config"]["epochs"] == 4 and saved["seed"] == 0 and "torch" in saved["versions"]
    assert (tmp_path / "a" / "log.csv").read_text().count("\n") == 5
    model, guide, cfg2 = load_run(tmp_path / "a")
    assert cfg2 == cfg


@pytest.mark.parametrize("objective,anneal", [("elbo", "none"), ("mean_field", "kl"), ("mean_field", "entropy"),
                                             ("iwae", "none")])
def test_objectives_improve_the_bound(tmp_path, objective, anneal):
    cfg = TrainConfig(epochs=6, objective=objective, num_particles=3, anneal=anneal,
                      anneal_epochs=1 if anneal != "none" else 0, **SMALL)
    res = train(cfg, tmp_path / objective, progress=False)
    assert res.log[-1]["valid_elbo"] > res.log[0]["valid_elbo"]
    assert all(torch.isfinite(torch.tensor(r["train_objective"])) for r in res.log)


def test_non_finite_loss_stops_before_the_step():
    p = torch.nn.Parameter(torch.ones(3))
    opt = torch.optim.Adam([p], lr=0.1)
    with pytest.raises(FloatingPointError, match="non-finite training loss at epoch 2"):
        training_step(lambda x: (p * x).sum() * float("nan"), opt, torch.ones(4, 3), where=" at epoch 2")
    assert torch.equal(p.detach(), torch.ones(3)) and opt.state_dict()["state"] == {}


def test_burda_schedule():
    cfg = TrainConfig(lr_schedule="burda")
    assert BURDA_EPOCHS == 3280
    assert learning_rate(cfg, 0) == pytest.approx(1e-3)
    assert learning_rate(cfg, 1) == pytest.approx(1e-3 * 10 ** (-1 / 7))   # epochs 1..3: i = 1
    assert learning_rate(cfg, 4) == pytest.approx(1e-3 * 10 ** (-2 / 7))   # epochs 4..12: i = 2
    assert learning_rate(cfg, 3279) == pytest.approx(1e-3 * 10 ** (-7 / 7))


def test_cosine_schedule():
    cfg = TrainConfig(lr_schedule="cosine", lr=2e-3, epochs=10)
    assert learning_rate(cfg, 0) == pytest.approx(2e-3)
    assert learning_rate(cfg, 5) == pytest.approx(1e-3)                     # half way: lr / 2
    assert learning_rate(cfg, 9) == pytest.approx(1e-3 * (1 + math.cos(0.9 * math.pi)))
    assert all(learning_rate(cfg, e) > learning_rate(cfg, e + 1) > 0 for e in range(9))


def test_existing_run_is_never_overwritten(tmp_path):
    cfg = TrainConfig(epochs=1, **SMALL)
    train(cfg, tmp_path, progress=False)
    before = (tmp_path / "checkpoint.pt").read_bytes()
    with pytest.raises(ConfigError, match="already holds a checkpoint"):
        train(cfg, tmp_path, progress=False)
    with pytest.raises(ConfigError, match="only epochs may change"):
        train(TrainConfig(epochs=2, **{**SMALL, "hidden": 16}), tmp_path, resume=True, progress=False)
    assert (tmp_path / "checkpoint.pt").read_bytes() == before


@pytest.mark.parametrize("bad,match", [
    (dict(objective="vi"), "objective='vi'"), (dict(epochs=0), "epochs=0"), (dict(lr=-1e-3), "lr=-0.001"),
    (dict(anneal="entropy"), "anneal_epochs"), (dict(model="poisson"), "model='poisson'"),
    (dict(anneal="entropy", anneal_epochs=3, objective="iwae"), "objective='iwae'"),
])
def test_bad_configs(bad, match):
    with pytest.raises(ConfigError, match=match):
        TrainConfig(**bad)


def test_unknown_guide_and_options(tmp_path):
    with pytest.raises(ConfigError, match="unknown guide family 'nope'"):
        train(TrainConfig(epochs=1, **{**SMALL, "guide": "nope"}), tmp_path / "a", progress=False)
    with pytest.raises(ConfigError, match=r"\[.widht.\].*allowed: \[.activation."):
        train(TrainConfig(epochs=1, **{**SMALL, "guide_options": {"widht": 3}}), tmp_path / "b", progress=False)
    assert not (tmp_path / "a" / "checkpoint.pt").exists()
