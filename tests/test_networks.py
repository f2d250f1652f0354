"""The convolutional architecture (``arch='conv'``): image shapes, the decoder's output layout, every family's
encoder on it, and a run trained and evaluated end to end through the CLI."""
import json

import pytest
import torch

from pyro_vaegap.cli import main
from pyro_vaegap.guide import check_guide
from pyro_vaegap.models import BernoulliVAE, GaussianVAE
from pyro_vaegap.networks import conv_decoder, encoder_body, image_shape
from pyro_vaegap.registry import get_family
from pyro_vaegap.utils import ConfigError, set_seed

from test_guides import FAMILIES


@pytest.mark.parametrize("data_dim,shape", [(64, (1, 8, 8)), (784, (1, 28, 28)), (3072, (3, 32, 32)),
                                            (12288, (3, 64, 64))])
def test_image_shape_and_round_trip(data_dim, shape):
    """Encoder features for rows with leading sample dimensions; the decoder gives back exactly D values per
    output for odd feature-map sizes too (28 → 14 → 7 → 3 needs an output padding on the way back)."""
    assert image_shape(data_dim) == shape
    body, width = encoder_body(data_dim, hidden=16, layers=2, arch="conv")
    assert body(torch.rand(3, 5, data_dim)).shape == (3, 5, width) and width == 16
    assert conv_decoder(4, data_dim, 2, 16, 1)(torch.randn(3, 5, 4)).shape == (3, 5, 2 * data_dim)


@pytest.mark.parametrize("data_dim", [50, 63, 36])
def test_conv_refuses_what_is_not_an_image(data_dim):
    with pytest.raises(ConfigError, match=f"data of width {data_dim}"):
        image_shape(data_dim)


def test_dense_conv_is_refused():
    with pytest.raises(ConfigError, match="dense=True is an MLP option"):
        encoder_body(64, 16, 2, dense=True, arch="conv")


def test_decoder_outputs_are_channel_blocks():
    """Output k is the k-th block of D values, channel-major: a Gaussian decoder's split into (mean,
    log-variance) must take whole images, not interleaved channels. Silencing the last transposed
    convolution's weights and setting the bias per output channel makes each block a constant."""
    dec = conv_decoder(3, 3072, 2, 8, 1)
    last = dec.net[-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.copy_(torch.arange(6.0))  # channels 0-2: output 0 (R, G, B); 3-5: output 1
    out = dec(torch.randn(2, 3))
    blocks = out.reshape(2, 2, 3, 32 * 32)
    assert torch.equal(blocks, torch.arange(6.0).reshape(1, 2, 3, 1).expand_as(blocks))


@pytest.mark.parametrize("name", FAMILIES)
def test_every_family_takes_a_conv_encoder(name):
    set_seed(0)
    model = BernoulliVAE(64, 3, hidden=8, decoder_layers=1, arch="conv")
    x = (torch.rand(4, 64, generator=torch.Generator().manual_seed(1)) < 0.5).float()
    amo, _ = FAMILIES[name]
    guide = get_family(name).make_amortized(model, **amo, arch="conv")
    assert any(isinstance(m, torch.nn.Conv2d) for m in guide.modules())
    check_guide(model, guide, x)


def test_gaussian_conv_decoder_scores_like_its_split():
    """log p(x|z) of the conv Gaussian model is the Normal of its first block (mean) and second block
    (log-variance): checked against torch.distributions on the decoder's raw output."""
    set_seed(0)
    model = GaussianVAE(64, 2, hidden=8, decoder_layers=1, arch="conv")
    z, x = torch.randn(5, 2), torch.rand(5, 64)
    out = model.decoder(z)
    expected = torch.distributions.Normal(out[:, :64], (out[:, 64:].exp() + model.min_variance).sqrt())
    assert torch.allclose(model.likelihood(z).log_prob(x), expected.log_prob(x).sum(-1), atol=1e-5)


def test_train_and_gaps_with_arch_conv(tmp_path, capsys):
    """``--arch conv`` gives a convolutional decoder and encoder, saved in the run's config and rebuilt by
    the gap report (which reads the run's config, not the command line)."""
    run = tmp_path / "run"
    assert main(["train", "--run-dir", str(run), "--dataset", "digits", "--epochs", "4", "--latent-dim", "3",
                 "--hidden", "16", "--guide-options", '{"hidden": 16}', "--arch", "conv", "--quiet"]) == 0
    ckpt = torch.load(run / "checkpoint.pt", weights_only=False)
    assert ckpt["config"]["arch"] == "conv"
    assert any(k.startswith("body.net.0.") for k in ckpt["guide"]) and any(".net." in k for k in ckpt["model"])
    assert ckpt["log"][-1]["valid_elbo"] > ckpt["log"][0]["valid_elbo"]  # seeded: it learns
    assert main(["gaps", "--run", str(run), "--num-points", "3", "--no-ais", "--iwae-samples", "20",
                 "--elbo-samples", "20", "--local-samples", "2", "--local-max-steps", "10",
                 "--local-check-every", "5", "--out", str(tmp_path / "rep"), "--quiet"]) == 0
    assert "amortization:ffg" in json.loads((tmp_path / "rep.json").read_text())["per_point"]
