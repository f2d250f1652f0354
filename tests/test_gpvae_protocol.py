"""Kim & Pavlovic's training protocol in the run machinery: the supplement's Table 6 networks (``arch="conv_kim"``),
a seeded 10% hold-out of the training rows for validation, and the best-by-validation weights kept in the
checkpoint across a resume."""
import pytest
import torch
from torch import nn

from pyro_vaegap.models.networks import decoder_net, encoder_body
from pyro_vaegap.runs import TrainConfig, load_run, read_checkpoint
from pyro_vaegap.training import train
from pyro_vaegap.training.loop import holdout_split
from pyro_vaegap.utils import ConfigError


def _layers(net):
    return [m for m in net.modules() if not isinstance(m, (nn.Sequential,)) and list(m.children()) == []]


def test_conv_kim_is_table_6():
    """Encoder: 32, 32, 64 4×4 stride-2 convolutions with LeakyReLU(0.01), FC 256 (then a family's head);
    decoder: FC 256, FC 3·3·64 (ReLU), transposed convolutions to 32, 32, 1 channels — as the table prints."""
    body, width = encoder_body(784, 256, 1, "relu", arch="conv_kim")
    convs = [m for m in body.modules() if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size, c.stride) for c in convs] == [
        (1, 32, (4, 4), (2, 2)), (32, 32, (4, 4), (2, 2)), (32, 64, (4, 4), (2, 2))]
    acts = [m for m in _layers(body) if not isinstance(m, (nn.Conv2d, nn.Linear, nn.Flatten))]
    assert len(acts) == 4 and all(isinstance(a, nn.LeakyReLU) and a.negative_slope == 0.01 for a in acts)
    assert [(l.in_features, l.out_features) for l in body.modules() if isinstance(l, nn.Linear)] == [(576, 256)]
    assert width == 256 and body(torch.rand(5, 784)).shape == (5, 256)
    dec = decoder_net(10, 784, 1, 256, 1, "relu", arch="conv_kim")
    assert [(l.in_features, l.out_features) for l in dec.modules() if isinstance(l, nn.Linear)] == [
        (10, 256), (256, 3 * 3 * 64)]
    tconvs = [m for m in dec.modules() if isinstance(m, nn.ConvTranspose2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size, c.stride) for c in tconvs] == [
        (64, 32, (4, 4), (2, 2)), (32, 32, (4, 4), (2, 2)), (32, 1, (4, 4), (2, 2))]
    assert sum(isinstance(m, nn.ReLU) for m in dec.modules()) == 4
    assert dec(torch.randn(2, 3, 10)).shape == (2, 3, 784)


def test_conv_kim_refuses_another_activation():
    with pytest.raises(ConfigError, match="conv_kim.*activation='relu'"):
        encoder_body(784, 256, 1, "elu", arch="conv_kim")


def test_holdout_split_is_a_seeded_partition():
    x = torch.arange(200.0).unsqueeze(-1)
    tr, va = holdout_split(x, 0.1, seed=3)
    assert va.shape[0] == 20 and tr.shape[0] == 180
    assert sorted(torch.cat([tr, va]).squeeze(-1).tolist()) == list(range(200))   # disjoint and complete
    assert torch.equal(holdout_split(x, 0.1, seed=3)[1], va)                       # fixed by the seed
    assert not torch.equal(holdout_split(x, 0.1, seed=4)[1], va)                   # a new split per seed
    assert torch.all(tr[1:] > tr[:-1])                                             # original order kept


def test_holdout_fraction_is_checked():
    with pytest.raises(ConfigError, match="holdout_fraction=1.5"):
        TrainConfig(valid_split="holdout", holdout_fraction=1.5)


CFG = dict(dataset="digits", latent_dim=2, hidden=8, guide_options={"hidden": 8}, batch_size=50, lr=3e-2,
           valid_split="holdout", holdout_fraction=0.2, keep_best=True, seed=1)


def test_best_weights_are_those_of_the_best_epoch(tmp_path):
    """The run trained with keep_best keeps, as "best", exactly the weights a run of the same seed has after the
    best epoch; an interrupted and resumed run keeps the same."""
    long = train(TrainConfig(epochs=6, **CFG), tmp_path / "long", progress=False)
    valid = [row["valid_elbo"] for row in long.log]
    best_epoch = max(range(6), key=valid.__getitem__) + 1
    ckpt = read_checkpoint(tmp_path / "long")
    assert ckpt["best"]["epoch"] == best_epoch and ckpt["best"]["valid_elbo"] == valid[best_epoch - 1]
    short = train(TrainConfig(epochs=best_epoch, **CFG), tmp_path / "short", progress=False)
    for k, v in short.model.state_dict().items():
        assert torch.equal(ckpt["best"]["model"][k], v), k
    for k, v in short.guide.state_dict().items():
        assert torch.equal(ckpt["best"]["guide"][k], v), k
    train(TrainConfig(epochs=6, **CFG), tmp_path / "resumed", progress=False, stop_after=2)
    train(TrainConfig(epochs=6, **CFG), tmp_path / "resumed", progress=False, resume=True)
    again = read_checkpoint(tmp_path / "resumed")["best"]
    assert again["epoch"] == best_epoch
    assert all(torch.equal(again["model"][k], v) for k, v in ckpt["best"]["model"].items())
    model, _, _ = load_run(tmp_path / "long", best=True)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in ckpt["best"]["model"].items())


def test_loading_best_of_a_run_without_it_is_refused(tmp_path):
    train(TrainConfig(epochs=1, **{**CFG, "keep_best": False}), tmp_path / "r", progress=False)
    with pytest.raises(ConfigError, match="keep_best"):
        load_run(tmp_path / "r", best=True)


def test_a_diverging_guide_stops_training_with_the_one_line_error(tmp_path):
    """SA's inner steps with a step size far too large for a small σ_x² make NaN inside the guide: training stops
    with FloatingPointError (a user error: one line, exit 2), naming where, not with Pyro's ValueError."""
    cfg = TrainConfig(dataset="digits_continuous", model="gaussian", variance="fixed", sigma2=1e-4, latent_dim=2,
                      hidden=8, guide="sa", guide_options={"hidden": 8, "num_steps": 8, "step_size": 1.0},
                      batch_size=50, epochs=1, seed=0)
    with pytest.raises(FloatingPointError, match=r"non-finite values in the model or guide at epoch 1, batch 1 "
                                                 r"\(Expected parameter"):
        train(cfg, tmp_path / "r", progress=False)
