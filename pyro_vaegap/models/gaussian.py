"""Continuous data: Gaussian likelihoods with a learned, per-dimension, shared or fixed variance, and the
"MSE loss" VAE of the VAE tutorial (R. Yu 2020)."""
from __future__ import annotations

import math

import pyro.distributions as dist
import torch
from pyro.nn import PyroParam
from torch.distributions import constraints

from ..data import validate_continuous
from .networks import decoder_net
from ..utils import ConfigError, check_choice
from .base import VAEModel


GAUSSIAN_VARIANCES = ("network", "diagonal", "scalar", "fixed")


class GaussianVAE(VAEModel):
    r"""MLP decoder with a Gaussian likelihood :math:`\mathcal N(x; \mu_\theta(z), \mathrm{diag}\,\sigma^2)`.

    :param variance: how :math:`\sigma^2` is obtained —
        ``"network"``: the decoder outputs :math:`\log\sigma^2(z)` beside :math:`\mu(z)`;
        ``"diagonal"``: one learned variance per dimension; ``"scalar"``: one learned variance shared
        by all dimensions (its optimum is the reconstruction MSE); ``"fixed"``: ``sigma2`` is not
        learned (the "MSE loss" VAE: MSE / (2 σ²) up to constants).
    :param sigma2: initial (or fixed) variance.
    :param dense: a densely connected decoder (:class:`~pyro_vaegap.models.networks.DenseMLP`) of the same widths.
    :param arch: ``"mlp"`` or ``"conv"`` (:func:`~pyro_vaegap.models.networks.decoder_net`).
    """

    def __init__(self, data_dim: int, latent_dim: int = 2, hidden: int = 100, decoder_layers: int = 2,
                 activation: str = "elu", variance: str = "network", sigma2: float = 1.0,
                 min_variance: float = 1e-6, dense: bool = False, arch: str = "mlp"):
        super().__init__(latent_dim, data_dim)
        self.variance = check_choice("variance", variance, GAUSSIAN_VARIANCES)
        if not (sigma2 > 0 and math.isfinite(sigma2)):
            raise ConfigError(f"sigma2={sigma2!r} is not allowed: expected a finite positive variance")
        self.min_variance = float(min_variance)
        outputs = 2 if variance == "network" else 1
        self.decoder = decoder_net(latent_dim, data_dim, outputs, hidden, decoder_layers, activation, dense, arch)
        if variance == "diagonal":
            self.sigma2 = PyroParam(torch.full((data_dim,), float(sigma2)), constraint=constraints.positive)
        elif variance == "scalar":
            self.sigma2 = PyroParam(torch.tensor(float(sigma2)), constraint=constraints.positive)
        elif variance == "fixed":
            self.register_buffer("fixed_sigma2", torch.tensor(float(sigma2)))

    def likelihood(self, z):
        out = self.decoder(z)
        if self.variance == "network":
            loc, log_var = out.split(self.data_dim, dim=-1)
            scale = (log_var.exp() + self.min_variance).sqrt()
        else:
            loc = out
            var = self.fixed_sigma2 if self.variance == "fixed" else self.sigma2
            scale = var.sqrt().expand_as(loc)
        return dist.Normal(loc, scale, validate_args=False).to_event(1)

    def validate_data(self, x):
        x = validate_continuous(x)
        self._check_width(x)
        return x


class MSEGaussianVAE(GaussianVAE):
    r"""The "MSE loss" VAE: a Gaussian likelihood with fixed :math:`\sigma^2 = 1/2`.

    With :math:`\sigma^2 = 1/2`, :math:`-\log p(x\mid z) = \lVert x - \mu(z)\rVert^2 + \tfrac D2\log\pi`,
    i.e. the summed squared error plus a constant — the reconstruction loss that VAE code often
    uses in place of a likelihood. It is still a proper density, so its ELBO and NLL are comparable
    with those of a learned-variance model (R. Yu 2020, §5.1: the misconception is that the scale
    does not matter; it sets the weight of reconstruction against the KL term).
    """

    MSE_SIGMA2 = 0.5

    def __init__(self, data_dim: int, latent_dim: int = 2, hidden: int = 100, decoder_layers: int = 2,
                 activation: str = "elu", dense: bool = False, arch: str = "mlp"):
        super().__init__(data_dim, latent_dim, hidden, decoder_layers, activation,
                         variance="fixed", sigma2=self.MSE_SIGMA2, dense=dense, arch=arch)
