"""Training options of the InfoVAE authors' protocol: the optimizer, gradient clipping by value, the per-epoch MMD
monitor, and the InfoVAE PixelCNN profiles that use them."""
import math

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch

from pyro_vaegap.train import TrainConfig, load_split, train, training_step
from pyro_vaegap.training.steps import aggregate_mmd2, make_optimizer
from pyro_vaegap.utils import ConfigError, stable_seed

SMALL = dict(dataset="digits", latent_dim=4, hidden=32, guide_options={"hidden": 32}, batch_size=100,
             num_train=200)


@pytest.mark.parametrize("field,value,message", [
    ("optimizer", "sgd", "optimizer='sgd' is not allowed"),
    ("clip_value", 0.0, "clip_value=0.0 is not allowed"),
    ("clip_value", float("inf"), "clip_value=inf is not allowed"),
    ("monitor_mmd", 1, "monitor_mmd=1 is not allowed: expected an integer >= 2"),
])
def test_config_rejects_bad_training_options(field, value, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        TrainConfig(**{field: value})


def test_monitor_larger_than_the_validation_rows_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="monitor_mmd=80 exceeds the 50 validation rows"):
        train(TrainConfig(epochs=1, num_valid=50, monitor_mmd=80, **SMALL), tmp_path / "r", progress=False)
    assert not (tmp_path / "r" / "checkpoint.pt").exists()


def test_optimizers():
    params = [torch.nn.Parameter(torch.zeros(3))]
    rms = make_optimizer(TrainConfig(optimizer="rmsprop", lr=2e-3), params)
    assert isinstance(rms, torch.optim.RMSprop)
    g = rms.param_groups[0]  # TensorFlow 1's RMSProp smoothing; its eps 1e-10 under the root is ~1e-5 outside
    assert (g["lr"], g["alpha"], g["eps"], g["momentum"]) == (2e-3, 0.9, 1e-5, 0)
    adam = make_optimizer(TrainConfig(adam_eps=1e-4), params)
    assert isinstance(adam, torch.optim.Adam) and adam.param_groups[0]["eps"] == 1e-4


def test_clip_value_clips_every_gradient_entry():
    """With SGD at lr 1 a step moves each weight by minus its (clipped) gradient: entries whose gradient exceeds
    the bound move by exactly the bound, the others by their own gradient."""
    torch.manual_seed(0)
    lin = torch.nn.Linear(4, 1, bias=False)
    x = torch.tensor([[3.0, -2.0, 0.1, -0.05]])

    def loss_fn(xb):
        return lin(xb).sum()  # gradient w.r.t. the weights: the row of x itself

    before = lin.weight.detach().clone()
    training_step(loss_fn, torch.optim.SGD(lin.parameters(), lr=1.0), x, clip_value=0.5)
    moved = before - lin.weight.detach()
    assert torch.allclose(moved, torch.tensor([[0.5, -0.5, 0.1, -0.05]]))
    # and without clipping, the raw gradient
    before = lin.weight.detach().clone()
    training_step(loss_fn, torch.optim.SGD(lin.parameters(), lr=1.0), x)
    assert torch.allclose(before - lin.weight.detach(), x)


def _toy(shift: float):
    """A model with z ~ N(0, I_2) per row and a guide q(z|x) = N(shift, I): q(z) equals the prior iff shift = 0."""
    def model(x):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(torch.zeros(2), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(z.sum(-1), 1.0), obs=x[:, 0])

    def guide(x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(torch.full((2,), shift), 1.0).to_event(1))
    return model, guide


def test_aggregate_mmd2_is_near_zero_for_the_prior_and_large_for_a_shift():
    """Under q(z) = p(z) the unbiased MMD² of n = 1000 draws has mean 0 and a standard deviation of order 1/n (the
    kernel is bounded by 1): a few 1e-3, so 0.01 is several of them; a shift of 1 in each of 2 dimensions gives an
    MMD² of about 0.2 (RBF, 2σ² = 2)."""
    x = torch.zeros(1000, 1)
    same = aggregate_mmd2(*_toy(0.0), x, seed=1)
    shifted = aggregate_mmd2(*_toy(1.0), x, seed=1)
    assert abs(same) < 0.01 and shifted > 0.1
    # seeded, and the random state outside is left alone
    torch.manual_seed(5)
    expect = torch.rand(1)
    torch.manual_seed(5)
    assert aggregate_mmd2(*_toy(0.0), x, seed=1) == same
    assert torch.equal(torch.rand(1), expect)


def test_training_with_the_authors_options_logs_the_monitor(tmp_path):
    """RMSProp, clipping and the monitor train a model whose logged MMD² is the one its checkpoint gives again."""
    cfg = TrainConfig(epochs=2, optimizer="rmsprop", clip_value=1.0, monitor_mmd=60, num_valid=100, **SMALL)
    res = train(cfg, tmp_path / "r", progress=False)
    assert [row["epoch"] for row in res.log] == [1, 2]
    assert res.log[1]["valid_elbo"] > res.log[0]["valid_elbo"] - 1.0 and math.isfinite(res.log[1]["valid_mmd2"])
    assert "valid_mmd2" in (tmp_path / "r" / "log.csv").read_text().splitlines()[0]
    from pyro_vaegap.data import seeded_subset

    x_valid = load_split(cfg, "valid")
    x_valid = res.model.validate_data(x_valid[seeded_subset(x_valid.shape[0], cfg.num_valid, cfg.seed)])
    again = aggregate_mmd2(res.model, res.guide, x_valid[:60], stable_seed(cfg.seed, "monitor_mmd", 1))
    assert again == pytest.approx(res.log[1]["valid_mmd2"], abs=1e-6)


# --- the InfoVAE PixelCNN profiles ---------------------------------------------------------------------------

def _loglik_args(argv):
    from pyro_vaegap.experiments import infovae_loglik
    return infovae_loglik.build_parser().parse_args(argv), infovae_loglik


def test_converged_profile_is_the_authors_protocol(tmp_path):
    from pyro_vaegap.harness.options import parse_args
    from pyro_vaegap.studies.infovae_pixelcnn import loglik_config

    parser_args, mod = _loglik_args([])
    args = parse_args(mod.build_parser(), ["--profile", "converged", "--out", str(tmp_path)], profiles=mod.PROFILES)
    cfgs = {o: loglik_config(args, o) for o in mod.OBJECTIVES}
    for cfg in cfgs.values():
        assert (cfg.dataset, cfg.num_train, cfg.batch_size, cfg.latent_dim) == ("dynamic_mnist", 50_000, 100, 5)
        assert (cfg.optimizer, cfg.clip_value, cfg.lr) == ("rmsprop", 1.0, 1e-3)
        assert cfg.guide_options == {"arch": "conv", "hidden": 512, "layers": 1, "activation": "elu"}
    assert cfgs["elbo"].objective == "elbo" and cfgs["elbo"].alpha is None
    assert (cfgs["mmd"].alpha, cfgs["mmd"].lambda_) == (1.0, 1000.0)
    assert (cfgs["stein"].alpha, cfgs["stein"].lambda_) == (1.0, 1000.0)
    assert (cfgs["adversarial"].alpha, cfgs["adversarial"].lambda_) == (1.0, 1.0)
    # --alpha / --lambda replace the profile's weights for every divergence
    args = parse_args(mod.build_parser(), ["--profile", "converged", "--lambda", "10", "--out", str(tmp_path)],
                      profiles=mod.PROFILES)
    assert loglik_config(args, "adversarial").lambda_ == 10.0 and loglik_config(args, "adversarial").alpha == 1.0


def test_cpu_profile_keeps_the_earlier_runs_configs(tmp_path):
    """The cpu profile's configs carry none of the new options, so its earlier runs are reused as they are."""
    from pyro_vaegap.harness.options import parse_args
    from pyro_vaegap.studies.infovae_pixelcnn import loglik_config

    _, mod = _loglik_args([])
    args = parse_args(mod.build_parser(), ["--out", str(tmp_path)], profiles=mod.PROFILES)
    cfg = loglik_config(args, "mmd")
    assert (cfg.dataset, cfg.optimizer, cfg.clip_value, cfg.monitor_mmd) == ("binarized_mnist", "adam", None, None)
    assert (cfg.alpha, cfg.lambda_) == (0.0, 1000.0) and cfg.guide_options["layers"] == 2


def test_tightest_counts_only_resolved_differences():
    """An estimator is loose only when another is below it by more than two standard errors of their paired
    difference on at least MIN_PAIRED shared images. Here AIS is 10 ± 0.5 nats below IWAE on its twelve images
    (resolved: IWAE is loose); the prior estimate is 3 nats below AIS on both of its two images, but two images
    resolve nothing, so both stay tight and the best of them is the lowest against IWAE."""
    from pyro_vaegap.experiments.infovae_loglik import MIN_PAIRED, tightest

    assert MIN_PAIRED == 10
    iwae = [90.0 + i for i in range(12)] + [70.0] * 8
    ais = [v - 10.0 + (0.5 if i % 2 else -0.5) for i, v in enumerate(iwae[:12])]
    res = {"nll_nats_per_point": iwae, "prior": {"nll_nats_per_point": [v - 3.0 for v in ais[:2]]},
           "ais": {"nll_nats_per_point": ais}}
    t = tightest(res)
    m = t["minus_iwae"]
    assert (m["iwae"]["num_points"], m["prior"]["num_points"], m["ais"]["num_points"]) == (20, 2, 12)
    assert m["prior"]["mean"] == pytest.approx(-13.0) and m["prior"]["se"] == pytest.approx(0.5)
    assert m["ais"]["mean"] == pytest.approx(-10.0)
    assert sorted(t["tight"]) == ["ais", "prior"] and t["best"] == "prior"
    # AIS 0.1 nat below IWAE on each of 12 images but with a spread of a nat: not resolved, IWAE stays tight
    noisy = {"nll_nats_per_point": iwae, "ais": {"nll_nats_per_point": [v - 0.1 + (1.0 if i % 2 else -1.0)
                                                                         for i, v in enumerate(iwae[:12])]}}
    t = tightest(noisy)
    assert sorted(t["tight"]) == ["ais", "iwae"] and t["best"] == "ais"
    # the same 10-nat gap on MIN_PAIRED - 1 images resolves nothing
    few = {"nll_nats_per_point": iwae, "ais": {"nll_nats_per_point": ais[:MIN_PAIRED - 1]}}
    assert sorted(tightest(few)["tight"]) == ["ais", "iwae"]
    assert tightest({"nll_nats_per_point": [90.0, 80.0]})["tight"] == ["iwae"]


def test_dynamic_test_labels_match_the_test_set(mnist_dir):
    """The labels of the dynamically binarized test split (MNIST's test order) have MNIST's class counts, the
    same as the static set's labels (the same 10,000 digits in another order), and fit the images."""
    from pyro_vaegap.studies.infovae_mnist import binarized_test_labels, labelled_test_images, mnist_test_labels

    if not (mnist_dir / "MNIST" / "raw").is_dir():
        pytest.skip("grey-level MNIST raw files not found")
    labels = mnist_test_labels(mnist_dir)
    assert labels.shape == (10_000,)
    assert np.bincount(labels).tolist() == np.bincount(binarized_test_labels(mnist_dir)).tolist()
    assert labels[:5].tolist() == [7, 2, 1, 0, 4]  # MNIST's first test digits
    x, y, rows = labelled_test_images(mnist_dir, 50, 0, "dynamic_mnist")
    assert set(x.unique().tolist()) <= {0.0, 1.0} and y.tolist() == labels[rows.numpy()].tolist()
