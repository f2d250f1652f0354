"""Tests of the tutorial's likelihoods: the discretized logistic pmf and the MSE-loss VAE."""
import math

import pytest
import torch

from pyro_vaegap.data import DataError, load_dataset
from pyro_vaegap.models import (DiscretizedLogistic, DiscretizedLogisticVAE, MSEGaussianVAE, grid_to_pixels,
                                pixels_to_grid)
from pyro_vaegap.train import TrainConfig, build_model


@pytest.mark.parametrize("loc,log_scale", [(0.0, -3.0), (0.93, -5.0), (-1.4, -1.0), (0.2, -7.0), (3.0, 0.5)])
def test_discretized_logistic_is_normalized_pmf(loc, log_scale):
    grid = torch.arange(256, dtype=torch.float64) / 127.5 - 1  # exact grid: float32 rounding breaks telescoping
    d = DiscretizedLogistic(torch.tensor(loc, dtype=torch.float64), torch.tensor(log_scale, dtype=torch.float64))
    lp = d.log_prob(grid)
    assert torch.isfinite(lp).all()
    assert abs(float(torch.logsumexp(lp, 0))) < 1e-9


def test_discretized_logistic_matches_cdf_differences():
    loc, s = torch.tensor(0.1, dtype=torch.float64), torch.tensor(0.05, dtype=torch.float64)
    k = torch.arange(256)
    u = pixels_to_grid(k).double()
    cdf = lambda y: torch.sigmoid((y - loc) / s)  # noqa: E731
    h = 1 / 255
    expected = torch.where(k == 0, cdf(u + h), torch.where(k == 255, 1 - cdf(u - h), cdf(u + h) - cdf(u - h)))
    torch.testing.assert_close(DiscretizedLogistic(loc, s.log()).log_prob(u).exp(), expected, atol=1e-12, rtol=1e-9)


def test_pixel_grid_roundtrip_and_validation():
    k = torch.arange(256, dtype=torch.uint8)
    assert torch.equal(grid_to_pixels(pixels_to_grid(k)), k.long())
    model = build_model(TrainConfig(dataset="digits_uint8", model="dlogistic", latent_dim=3), 64)
    assert isinstance(model, DiscretizedLogisticVAE)
    x = model.validate_data(load_dataset("digits_uint8", "test"))
    assert x.dtype == torch.float32 and torch.equal(model.validate_data(x), x)  # idempotent
    with pytest.raises(DataError, match="not 8-bit pixels"):
        model.validate_data(torch.full((2, 64), 3.0))
    lp = model.likelihood(torch.randn(5, 4, 3)).log_prob(x[:4])
    assert lp.shape == (5, 4) and torch.isfinite(lp).all()


def test_mse_vae_is_squared_error_plus_constant():
    model = MSEGaussianVAE(data_dim=3, latent_dim=2)
    z, x = torch.randn(4, 2), torch.randn(4, 3)
    like = model.likelihood(z)
    sq = ((x - like.base_dist.loc) ** 2).sum(-1)
    torch.testing.assert_close(-like.log_prob(x), sq + 1.5 * math.log(math.pi))
    assert isinstance(build_model(TrainConfig(dataset="8gaussians", model="mse", latent_dim=2), 2), MSEGaussianVAE)
