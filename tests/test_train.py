"""Training: objectives, annealing, the Burda schedule, checkpoints and exact resume."""
import json
import math
import re
from pathlib import Path

import pytest
import torch

from pyro_vaegap.train import BURDA_EPOCHS, TrainConfig, learning_rate, load_run, train, training_step
from pyro_vaegap.utils import ConfigError, ConfigWarning

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


# ------------------------------------------------------------------------------------------------
# Run folders: one source of truth, resume without repeating the options, Ctrl-C
# ------------------------------------------------------------------------------------------------

TINY_ARGS = ["--latent-dim", "2", "--hidden", "8", "--guide-options", '{"hidden": 8}', "--num-train", "200",
             "--batch-size", "50", "--quiet"]


def test_data_dir_is_stored_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = TrainConfig(data_dir="data")
    assert cfg.data_dir == str(tmp_path / "data")
    assert TrainConfig(data_dir="~/d").data_dir == str(Path.home() / "d") and TrainConfig(data_dir="").data_dir is None
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg


def test_bare_resume_uses_the_runs_config_and_extending_rewrites_config_json(tmp_path, capsys):
    from pyro_vaegap.cli import main

    run = tmp_path / "run"
    assert main(["train", "--run-dir", str(run), "--epochs", "1", *TINY_ARGS]) == 0
    assert main(["train", "--run-dir", str(run), "--resume", "--quiet"]) == 0  # nothing to do, nothing asked
    assert main(["train", "--run-dir", str(run), "--resume", "--epochs", "2", "--quiet"]) == 0
    ckpt = torch.load(run / "checkpoint.pt", weights_only=False)
    copy = json.loads((run / "config.json").read_text())
    assert ckpt["epoch"] == 2 and ckpt["config"]["epochs"] == 2 and copy["config"] == ckpt["config"]
    assert copy["seed"] == 0 and "versions" in copy and copy["config"]["hidden"] == 8
    assert "warning" not in capsys.readouterr().err
    # an edited copy is reported (and repaired by the next resume), never read
    copy["config"]["hidden"] = 16
    (run / "config.json").write_text(json.dumps(copy))
    with pytest.warns(ConfigWarning, match=r"config.json differs from the checkpoint in hidden \(16 there, 8 in"):
        _, _, cfg = load_run(run)
    assert cfg.hidden == 8
    assert main(["train", "--run-dir", str(run), "--resume", "--quiet"]) == 0
    assert "config.json differs from the checkpoint in hidden" in capsys.readouterr().err
    assert json.loads((run / "config.json").read_text())["config"] == ckpt["config"]


def test_ctrl_c_then_the_printed_command_resumes_to_the_uninterrupted_result(tmp_path, monkeypatch, capsys):
    """The message names the saved epochs and the exact command; that command finishes the run with the
    parameters of an uninterrupted one."""
    import shlex

    import pyro_vaegap.training.loop as train_mod
    from pyro_vaegap.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(["train", "--run-dir", "full", "--epochs", "3", *TINY_ARGS]) == 0
    original, calls = train_mod.training_step, {"n": 0}

    def interrupted(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 10:  # epoch 3, batch 2 (4 batches per epoch)
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(train_mod, "training_step", interrupted)
    assert main(["train", "--run-dir", "cut", "--epochs", "3", *TINY_ARGS]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("vaegap: error: interrupted during epoch 3 of 3; ")
    assert "cut/checkpoint.pt holds epochs 1-2" in err
    command = shlex.split(re.search(r'resume with "(.*)"$', err).group(1))
    assert command[0] == "vaegap"
    monkeypatch.setattr(train_mod, "training_step", original)
    assert main(command[1:] + ["--quiet"]) == 0
    a, b = (torch.load(tmp_path / r / "checkpoint.pt", weights_only=False) for r in ("full", "cut"))
    assert a["epoch"] == b["epoch"] == 3 and a["config"] == b["config"]
    for part in ("model", "guide"):
        assert all(torch.equal(a[part][k], b[part][k]) for k in a[part])
    logs = [(tmp_path / r / "log.csv").read_text().splitlines() for r in ("full", "cut")]
    assert len(logs[0]) == len(logs[1]) == 4


def test_damaged_checkpoints_name_the_file_and_the_fix(tmp_path):
    cfg = TrainConfig(epochs=1, **SMALL)
    train(cfg, tmp_path, progress=False)
    whole = (tmp_path / "checkpoint.pt").read_bytes()
    for content, what in ((b"", "is empty"), (whole[: len(whole) // 3], "is damaged"), (b"\x80\x04junk", "is damaged"),
                          (torch.zeros(1).numpy().tobytes(), "is damaged")):
        (tmp_path / "checkpoint.pt").write_bytes(content)
        for call in (lambda: load_run(tmp_path), lambda: train(cfg, tmp_path, resume=True, progress=False)):
            with pytest.raises(ConfigError, match=f"checkpoint.pt {what}.*restore it from a backup, or delete the run "
                                                  "folder"):
                call()
        assert (tmp_path / "checkpoint.pt").read_bytes() == content  # left as it was
    torch.save({"model": {}}, tmp_path / "checkpoint.pt")
    with pytest.raises(ConfigError, match="not a training checkpoint of this package"):
        load_run(tmp_path)


def test_a_locked_run_folder_is_refused(tmp_path):
    from pyro_vaegap.utils import FolderLock

    with FolderLock(tmp_path / "run", "run folder"):
        with pytest.raises(ConfigError, match=r"run folder .* is in use by pid \d+"):
            train(TrainConfig(epochs=1, **SMALL), tmp_path / "run", progress=False)
    assert not (tmp_path / "run" / "checkpoint.pt").exists() and not (tmp_path / "run" / "config.json").exists()


@pytest.mark.parametrize("lr", [float("inf"), float("nan"), 0.0, -1.0])
def test_learning_rate_must_be_finite_and_positive(lr):
    with pytest.raises(ConfigError, match="expected a finite positive number"):
        TrainConfig(lr=lr)


def test_fixed_variance_gaussian_decoder_is_homoscedastic_and_not_learned():
    """``variance='fixed'`` with ``sigma2``: every pixel has variance sigma2, nothing about it is trained, and
    the log-likelihood keeps its constants (with sigma2 = 0.01 a close reconstruction scores positive nats,
    as the GPVAE paper's grey-level numbers do)."""
    from pyro_vaegap.train import build_model

    model = build_model(TrainConfig(model="gaussian", variance="fixed", sigma2=0.01, latent_dim=2, hidden=8), 64)
    assert not any("sigma2" in n for n, _ in model.named_parameters())
    z = torch.randn(3, 2)
    like = model.likelihood(z)
    loc = model.decoder(z)
    assert torch.allclose(like.base_dist.scale, torch.full_like(loc, 0.1))
    x = loc.detach() + 0.01 * torch.randn_like(loc)
    expected = 64 * (-0.5 * math.log(2 * math.pi * 0.01)) - ((x - loc) ** 2).sum(-1) / (2 * 0.01)
    assert torch.allclose(like.log_prob(x), expected, rtol=1e-5) and bool((expected > 0).all())


def test_num_valid_takes_a_seeded_subset_of_the_validation_split(tmp_path):
    """``num_valid``: the per-epoch validation ELBO is computed on a seeded random subset of that size;
    more rows than the split holds is refused before any epoch runs."""
    from pyro_vaegap.data import load_dataset, seeded_subset
    from pyro_vaegap.train import mean_elbo

    cfg = TrainConfig(epochs=1, num_valid=50, **SMALL)
    res = train(cfg, tmp_path / "a", progress=False)
    x_valid = load_dataset("digits", "valid")
    torch.manual_seed(0)
    subset = mean_elbo(res.model, res.guide, x_valid[seeded_subset(x_valid.shape[0], 50, cfg.seed)], 200)
    assert abs(res.log[0]["valid_elbo"] - subset) < 3.0  # one-sample estimate against a 200-sample one
    with pytest.raises(ConfigError, match="num_valid=100000 exceeds"):
        train(TrainConfig(epochs=1, num_valid=100_000, **SMALL), tmp_path / "b", progress=False)
    with pytest.raises(ConfigError, match="num_valid"):
        TrainConfig(num_valid=0, **SMALL)


# ------------------------------------------------------------------------------------------------
# A new encoder on a frozen decoder (decoder_from; Cremer et al.'s Table 4)
# ------------------------------------------------------------------------------------------------

def test_decoder_from_trains_only_a_new_encoder_and_leaves_the_decoder_bit_identical(tmp_path):
    """The decoder of the base run is loaded and never changes (bit for bit, in memory and in the new run's
    checkpoint); Adam holds only the guide's parameters; the new encoder's ELBO beats an untrained one's on
    validation data, paired per point, by more than 4 standard errors of the per-point differences."""
    from pyro_vaegap.data import load_dataset
    from pyro_vaegap.traces import log_weights
    from pyro_vaegap.train import build_guide, read_checkpoint

    base = train(TrainConfig(epochs=2, **SMALL), tmp_path / "base", progress=False)
    decoder = {k: v.clone() for k, v in base.model.state_dict().items()}
    small = {**SMALL, "guide_options": {"hidden": 16, "layers": 1}}
    cfg = TrainConfig(epochs=3, decoder_from=str(tmp_path / "base"), seed=1, **small)
    new = train(cfg, tmp_path / "enc", progress=False)
    saved = read_checkpoint(tmp_path / "enc")
    for state in (new.model.state_dict(), saved["model"]):
        assert state.keys() == decoder.keys() and all(torch.equal(state[k], decoder[k]) for k in decoder)
    n_guide = sum(1 for _ in new.guide.parameters())
    assert len(saved["optimizer"]["param_groups"][0]["params"]) == n_guide < n_guide + len(decoder)
    assert json.loads((tmp_path / "enc" / "config.json").read_text())["config"]["decoder_from"] == \
        str(tmp_path / "base")
    x = load_dataset("digits", "valid")
    torch.manual_seed(2)
    untrained = build_guide(cfg, new.model)
    with torch.no_grad():
        diff = log_weights(new.model, new.guide, x, 20).mean(0) - log_weights(new.model, untrained, x, 20).mean(0)
    assert diff.mean() > 4 * diff.std() / math.sqrt(len(diff))
    # resuming needs the checkpoint only: the decoder's folder may be gone
    train(cfg, tmp_path / "cut", stop_after=2, progress=False)
    (tmp_path / "base" / "checkpoint.pt").rename(tmp_path / "moved.pt")
    resumed = train(cfg, tmp_path / "cut", resume=True, progress=False)
    assert all(torch.equal(resumed.guide.state_dict()[k], v) for k, v in new.guide.state_dict().items())


def test_decoder_from_refuses_a_missing_unfinished_or_different_run(tmp_path):
    with pytest.raises(ConfigError, match=r"decoder_from: .*nope is not a training run: no checkpoint.pt"):
        train(TrainConfig(epochs=1, decoder_from=str(tmp_path / "nope"), **SMALL), tmp_path / "a", progress=False)
    train(TrainConfig(epochs=2, **SMALL), tmp_path / "base", stop_after=1, progress=False)
    with pytest.raises(ConfigError, match=r"is not finished \(1 of 2 epochs trained\)"):
        train(TrainConfig(epochs=1, decoder_from=str(tmp_path / "base"), **SMALL), tmp_path / "b", progress=False)
    train(TrainConfig(epochs=2, **SMALL), tmp_path / "base", resume=True, progress=False)
    with pytest.raises(ConfigError, match=r"differs from this config's in latent_dim \(4 there, 3 here\), hidden "
                                          r"\(32 there, 16 here\); give the run's model options"):
        train(TrainConfig(epochs=1, decoder_from=str(tmp_path / "base"), **{**SMALL, "latent_dim": 3, "hidden": 16}),
              tmp_path / "c", progress=False)
    with pytest.raises(ConfigError, match="decoder_from=''"):
        TrainConfig(decoder_from="")
    assert not any((tmp_path / r / "checkpoint.pt").exists() for r in "abc")


def test_train_plus_valid_trains_on_both_splits_and_adam_eps_reaches_the_optimizer(tmp_path):
    """Cremer et al.'s protocol: ``train_split='train+valid'`` trains on both splits (so ``num_train`` may reach
    their summed size and no further), the per-epoch ELBO then needs ``valid_split='test'``, and ``adam_eps`` is
    the optimizer's epsilon in the checkpoint."""
    from pyro_vaegap.data import load_dataset
    from pyro_vaegap.train import read_checkpoint

    both = load_dataset("digits", "train").shape[0] + load_dataset("digits", "valid").shape[0]
    base = {k: v for k, v in SMALL.items() if k != "num_train"}
    cfg = TrainConfig(epochs=1, train_split="train+valid", valid_split="test", adam_eps=1e-4, num_train=both, **base)
    train(cfg, tmp_path / "a", progress=False)
    ckpt = read_checkpoint(tmp_path / "a")
    assert ckpt["optimizer"]["param_groups"][0]["eps"] == 1e-4
    with pytest.raises(ConfigError, match=f"num_train={both + 1} exceeds the {both} training rows"):
        train(TrainConfig(epochs=1, train_split="train+valid", valid_split="test", num_train=both + 1, **base),
              tmp_path / "b", progress=False)
    with pytest.raises(ConfigError, match="valid_split='test'"):
        TrainConfig(train_split="train+valid", **SMALL)
    with pytest.raises(ConfigError, match="adam_eps=0"):
        TrainConfig(adam_eps=0, **SMALL)


def test_adam_is_fused_equals_the_loop_to_rounding_and_a_resumed_run_stays_fused(tmp_path, monkeypatch):
    """make_optimizer's Adam is torch's fused one; 20 steps of it on the same gradients land where torch's
    per-parameter loop lands (float32 rounding: 1e-6 relative); a checkpoint saved by the loop (no fused flag, as
    runs saved before) resumes on the fused implementation with the saved moments, and a training run resumed
    from its checkpoint carries on fused."""
    from pyro_vaegap.train import read_checkpoint
    from pyro_vaegap.training import steps

    cfg = TrainConfig(adam_eps=1e-4, lr=1e-2, **SMALL)
    g = torch.Generator().manual_seed(0)
    start = [torch.randn(s, generator=g) for s in ((300, 40), (40,), (10, 40, 40))]
    fused_p, loop_p = [[s.clone().requires_grad_() for s in start] for _ in range(2)]
    fused, loop = steps.make_optimizer(cfg, fused_p), torch.optim.Adam(loop_p, lr=1e-2, eps=1e-4)
    assert fused.param_groups[0]["fused"] is True and not loop.param_groups[0]["fused"]
    for _ in range(20):
        for a, b in zip(fused_p, loop_p):
            a.grad = torch.randn(a.shape, generator=g)
            b.grad = a.grad.clone()
        fused.step()
        loop.step()
    for a, b, s in zip(fused_p, loop_p, start):
        assert not torch.equal(a, s)  # they moved
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)
    again = steps.make_optimizer(cfg, [p.detach().clone().requires_grad_() for p in loop_p])
    steps.restore_optimizer(again, loop.state_dict())
    assert again.param_groups[0]["fused"] is True
    assert torch.equal(again.state_dict()["state"][0]["exp_avg"], loop.state_dict()["state"][0]["exp_avg"])
    seen = []
    real = steps.restore_optimizer
    monkeypatch.setattr("pyro_vaegap.training.loop.restore_optimizer",
                        lambda opt, state: (real(opt, state), seen.append(opt.param_groups[0]["fused"])))
    train(TrainConfig(epochs=2, **SMALL), tmp_path / "r", stop_after=1, progress=False)
    assert read_checkpoint(tmp_path / "r")["optimizer"]["param_groups"][0]["fused"] is True
    train(TrainConfig(epochs=2, **SMALL), tmp_path / "r", resume=True, progress=False)
    assert seen == [True]


def test_dynamic_binarization_draws_fresh_bits_per_batch_and_resumes_exactly(tmp_path, monkeypatch):
    """``dynamic_mnist``: training minibatches are fresh Bernoulli draws of the grey levels (two epochs see
    different bits of the same image, at the rate the probabilities give), the test split is one fixed draw,
    and a resumed run equals an uninterrupted one."""
    from pyro_vaegap import data as data_pkg
    from pyro_vaegap.data import DYNAMIC_EVAL_SEED, dynamic_binarize, load_dataset

    g = torch.Generator().manual_seed(12345)  # not a seed the binarization uses: its uniforms would be the data
    grey = {s: torch.rand(n, 64, generator=g) for s, n in (("train", 200), ("valid", 50), ("test", 50))}
    monkeypatch.setitem(data_pkg.dynamic._GREY, "dynamic_mnist", lambda split, data_dir=None, download=False:
                        grey[split].clone())
    test = load_dataset("dynamic_mnist", "test")
    assert torch.equal(test, dynamic_binarize(grey["test"], DYNAMIC_EVAL_SEED + 1))
    assert set(test.unique().tolist()) <= {0.0, 1.0} and torch.equal(test, load_dataset("dynamic_mnist", "test"))
    # the bits follow the probabilities: mean of 12,800 Bernoulli draws, sd <= 0.5 / sqrt(12800) = 0.0044
    draws = torch.stack([dynamic_binarize(grey["train"], s) for s in range(2)])
    assert abs(float(draws[0].mean() - grey["train"].mean())) < 5 * 0.0044
    assert (draws[0] != draws[1]).float().mean() > 0.3  # two seeds: independent draws of p(1-p)-mixed pixels
    seen = []
    real_step = __import__("pyro_vaegap.train", fromlist=["training_step"]).training_step

    def spy(loss_fn, opt, x, where="", **options):  # options: training_step's keywords (clip_value)
        seen.append(x.clone())
        return real_step(loss_fn, opt, x, where, **options)
    monkeypatch.setattr("pyro_vaegap.training.loop.training_step", spy)
    cfg = TrainConfig(dataset="dynamic_mnist", latent_dim=4, hidden=16, guide_options={"hidden": 16}, batch_size=200,
                      epochs=2)
    full = train(cfg, tmp_path / "a", progress=False)
    assert len(seen) == 2 and set(seen[0].unique().tolist()) <= {0.0, 1.0} and not torch.equal(seen[0], seen[1])
    train(cfg, tmp_path / "b", stop_after=1, progress=False)
    resumed = train(cfg, tmp_path / "b", resume=True, progress=False)
    a, b = _state(full), _state(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a)
