r""""The latent vector is not a parameter" (R. Yu 2020, §5.2): two global optima of a VAE on Gaussian data.

For data :math:`x\sim\mathcal N(\mu_{gt}, \sigma_{gt}^2 I_n)` and :math:`z\in\mathbb R^n`,
:math:`p(z)=\mathcal N(0,I)`, the tutorial names two VAEs whose likelihood is the data's own:

* **z ignored** (:func:`ignore_z`): :math:`p(x\mid z) = \mathcal N(\mu_{gt}, \sigma_{gt}^2 I)`,
  :math:`q(z\mid x) = p(z)`. Here :math:`p(x) = p_{gt}(x)` exactly and :math:`q` *is* the posterior
  (the decoder does not read :math:`z`), so :math:`\mathcal L[q] = \log p(x)`: every gap is 0.
* **near-deterministic auto-encoder** (:func:`near_deterministic`):
  :math:`q(z\mid x)=\mathcal N((x-\mu_{gt})/\sigma_{gt}, \epsilon^2 I)`,
  :math:`p(x\mid z)=\mathcal N(\sigma_{gt}z+\mu_{gt}, \sigma_{gt}^2\epsilon^2 I)`. Then
  :math:`p(x)=\mathcal N(\mu_{gt}, \sigma_{gt}^2(1+\epsilon^2) I)`, so
  :math:`\mathbb E[-\log p(x)] - H = \tfrac n2[\log(1+\epsilon^2) - \epsilon^2/(1+\epsilon^2)] = O(\epsilon^4)`;
  the posterior is :math:`\mathcal N\big((x-\mu_{gt})/(\sigma_{gt}(1+\epsilon^2)),\ \epsilon^2/(1+\epsilon^2) I\big)`,
  in the FFG family (approximation gap 0), and the tutorial's encoder misses it by
  :math:`\mathrm{KL}(q\|p(z\mid x)) = \tfrac n2[\epsilon^2 - \log(1+\epsilon^2)] + \tfrac{\epsilon^2}{2(1+\epsilon^2)}\lVert u\rVert^2`,
  :math:`u = (x-\mu_{gt})/\sigma_{gt}` — an amortization gap of order :math:`\epsilon^2` that vanishes as
  :math:`\epsilon\to 0`.

Both are :class:`~pyro_vaegap.models.LinearGaussian` models (closed-form :math:`\log p(x)`) with a
:class:`LinearEncoder`, an affine FFG encoder, so the gap report treats them like any trained model.
:func:`pyro_vaegap.tutorial.fit.fit` trains a model and guide from scratch by SVI, to see which optimum
optimization finds.
"""
from __future__ import annotations

import math

import pyro
import pyro.distributions as dist
import torch
from pyro.nn import PyroParam
from torch import nn
from torch.distributions import constraints

from ..contract.guide import Guide
from ..models import LinearGaussian, data_plate
from ..utils import ConfigError, check_positive_int


def _check_gaussian(mu, sigma):
    mu = torch.as_tensor(mu, dtype=torch.float64)
    if mu.dim() != 1 or not torch.isfinite(mu).all():
        raise ConfigError(f"mu_gt={mu.tolist()!r} is not allowed: expected a finite vector")
    sigma = float(sigma)
    if not (math.isfinite(sigma) and sigma > 0):
        raise ConfigError(f"sigma_gt={sigma!r} is not allowed: expected a finite positive number")
    return mu, sigma


def gaussian_data(mu_gt, sigma_gt: float, num: int, seed: int = 0) -> torch.Tensor:
    """``num`` seeded draws of :math:`\\mathcal N(\\mu_{gt}, \\sigma_{gt}^2 I)`, float64 ``(num, n)``."""
    mu, sigma = _check_gaussian(mu_gt, sigma_gt)
    g = torch.Generator().manual_seed(seed)
    return mu + sigma * torch.randn(check_positive_int("num", num), mu.shape[0], generator=g, dtype=torch.float64)


def gaussian_entropy(n: int, sigma_gt: float) -> float:
    """:math:`H = \\tfrac n2\\log(2\\pi e\\sigma_{gt}^2)` (nats), the best expected NLL of any model."""
    return 0.5 * n * math.log(2 * math.pi * math.e * sigma_gt ** 2)


class LinearEncoder(Guide):
    r"""Affine FFG encoder :math:`q(z\mid x) = \mathcal N(Cx + c, \mathrm{diag}\,s^2)`, trainable.

    :meth:`encode` returns ``(loc, scale)`` like the ``ffg`` encoder, so the gap report can start its
    per-datum FFG optimization from it (``local_init="encoder"``).
    """

    def __init__(self, model, C: torch.Tensor | None = None, c: torch.Tensor | None = None,
                 s: torch.Tensor | None = None, dtype=torch.float64):
        super().__init__(model)
        d, D = self.latent_dim, self.data_dim
        C = torch.zeros(d, D, dtype=dtype) if C is None else torch.as_tensor(C, dtype=dtype)
        c = torch.zeros(d, dtype=dtype) if c is None else torch.as_tensor(c, dtype=dtype)
        s = torch.ones(d, dtype=dtype) if s is None else torch.as_tensor(s, dtype=dtype)
        if C.shape != (d, D) or c.shape != (d,) or s.shape != (d,) or not bool((s > 0).all()):
            raise ConfigError(f"LinearEncoder needs C ({d}, {D}), c ({d},) and a positive s ({d},)")
        self.C = nn.Parameter(C.clone())
        self.c = nn.Parameter(c.clone())
        self.s = PyroParam(s.clone(), constraint=constraints.positive)

    def encode(self, x):
        loc = x @ self.C.T + self.c
        return loc, self.s.expand_as(loc)

    def forward(self, x, idx=None, num_data=None):
        loc, scale = self.encode(x)
        with data_plate(x, idx, num_data):
            return pyro.sample("z", dist.Normal(loc, scale).to_event(1))


def ignore_z(mu_gt, sigma_gt: float):
    """The VAE that ignores z: ``(LinearGaussian(W=0, b=mu_gt, psi=sigma_gt²), LinearEncoder(q = prior))``."""
    mu, sigma = _check_gaussian(mu_gt, sigma_gt)
    n = mu.shape[0]
    model = LinearGaussian(n, n, W=torch.zeros(n, n, dtype=torch.float64), b=mu,
                           psi=torch.full((n,), sigma ** 2, dtype=torch.float64))
    return model, LinearEncoder(model)


def near_deterministic(mu_gt, sigma_gt: float, eps: float):
    """The near-deterministic VAE: ``LinearGaussian(W=sigma_gt I, b=mu_gt, psi=(sigma_gt eps)²)`` and
    ``LinearEncoder(C=I/sigma_gt, c=-mu_gt/sigma_gt, s=eps)``."""
    mu, sigma = _check_gaussian(mu_gt, sigma_gt)
    eps = float(eps)
    if not (math.isfinite(eps) and eps > 0):
        raise ConfigError(f"eps={eps!r} is not allowed: expected a finite positive number")
    n = mu.shape[0]
    eye = torch.eye(n, dtype=torch.float64)
    model = LinearGaussian(n, n, W=sigma * eye, b=mu, psi=torch.full((n,), (sigma * eps) ** 2, dtype=torch.float64))
    guide = LinearEncoder(model, C=eye / sigma, c=-mu / sigma, s=torch.full((n,), eps, dtype=torch.float64))
    return model, guide


def near_deterministic_gaps(n: int, eps: float, u_sq: torch.Tensor) -> dict:
    r"""The closed forms of the module docstring for the near-deterministic VAE, per datapoint
    (``u_sq`` = :math:`\lVert(x-\mu_{gt})/\sigma_{gt}\rVert^2`, shape ``(N,)``): ``{"nll_excess": E[-log p] - H,
    "amortization": KL(q || p(z|x)), "approximation": 0}`` (nats)."""
    e2 = eps ** 2
    amort = 0.5 * n * (e2 - math.log1p(e2)) + 0.5 * e2 / (1 + e2) * u_sq
    return {"nll_excess": 0.5 * n * (math.log1p(e2) - e2 / (1 + e2)), "amortization": amort,
            "approximation": torch.zeros_like(u_sq)}
