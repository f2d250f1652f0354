"""Tests of bits-back ANS compression (pyro_vaegap.compression) on a small trained digits VAE."""
import math

import numpy as np
import pytest
import torch

from pyro_vaegap.compression import BBANSCoder, compress_and_check
from pyro_vaegap.data import load_dataset, seeded_subset
from pyro_vaegap.estimators import importance_sample
from pyro_vaegap.models import GaussianVAE
from pyro_vaegap.train import TrainConfig, train
from pyro_vaegap.utils import ConfigError, set_seed

pytest.importorskip("constriction")


@pytest.fixture(scope="module")
def digits_vae(tmp_path_factory):
    cfg = TrainConfig(dataset="digits", model="bernoulli", latent_dim=6, hidden=64,
                      guide_options={"hidden": 64}, epochs=15, batch_size=50, seed=0)
    res = train(cfg, tmp_path_factory.mktemp("run"), progress=False)
    return res.model.eval(), res.guide.eval()


def test_roundtrip_exact_and_rate_near_neg_elbo(digits_vae):
    model, guide = digits_vae
    x = load_dataset("digits", "test")
    x = x[seeded_subset(x.shape[0], 40, 0)]
    out = compress_and_check(model, guide, x, latent_bits=12, seed=0)
    assert out["roundtrip_exact"]
    set_seed(0)
    neg_elbo_bits = float(-importance_sample(model, guide, x, 2000, psis=False).elbo.mean()) / math.log(2)
    # The net rate is a one-sample estimate per image of the discretized -ELBO; with 40 images its
    # sampling error is ~1-2 %, and the discretization + ANS overhead is < 1 %: 5 % is a safe bound.
    assert abs(out["net_bits_per_image"] / neg_elbo_bits - 1) < 0.05
    assert out["initial_bits"] == 32 * BBANSCoder(model, guide).initial_words


def test_decode_restores_images_in_order(digits_vae):
    model, guide = digits_vae
    coder = BBANSCoder(model, guide, latent_bits=8, seed=3)
    x = load_dataset("digits", "valid")[:5]
    res = coder.encode(x)
    decoded, rest = coder.decode(res.compressed, 5)
    assert torch.equal(decoded, x) and np.array_equal(rest, coder.initial_message())
    assert res.per_image_bits.shape == (5,)


def test_bad_inputs(digits_vae):
    model, guide = digits_vae
    with pytest.raises(ConfigError, match="BernoulliVAE"):
        BBANSCoder(GaussianVAE(64), guide)
    with pytest.raises(ConfigError, match="latent_bits=30"):
        BBANSCoder(model, guide, latent_bits=30)
    with pytest.raises(Exception, match="not 0 or 1"):
        BBANSCoder(model, guide).encode(torch.full((1, 64), 0.5))
