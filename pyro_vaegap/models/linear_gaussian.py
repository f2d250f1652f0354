"""The linear-Gaussian model, whose posterior, marginal likelihood and gaps are closed form."""
from __future__ import annotations

import pyro.distributions as dist
import torch
from pyro.nn import PyroParam
from torch import nn
from torch.distributions import constraints

from ..data import validate_continuous
from ..utils import ConfigError
from .base import VAEModel


class LinearGaussian(VAEModel):
    r"""Linear-Gaussian model :math:`p(x\mid z)=\mathcal N(Wz+b,\ \mathrm{diag}\,\psi)`, :math:`z\sim\mathcal N(0,I)`.

    Everything is closed form, which is why every estimator is validated on it:

    .. math::

        p(x) = \mathcal N(x;\ b,\ WW^\top + \mathrm{diag}\,\psi), \qquad
        p(z\mid x) = \mathcal N(\Lambda^{-1} W^\top \Psi^{-1}(x - b),\ \Lambda^{-1}),\quad
        \Lambda = I + W^\top \Psi^{-1} W.

    The best fully factorized Gaussian (the per-datum FFG optimum of the ELBO) has means equal to the
    posterior mean and variances :math:`1/\Lambda_{ii}`, so the FFG approximation gap is the same for
    every ``x``: :math:`\tfrac12(\sum_i \log \Lambda_{ii} - \log\det\Lambda)`.
    """

    def __init__(self, data_dim: int, latent_dim: int, W: torch.Tensor | None = None,
                 b: torch.Tensor | None = None, psi: torch.Tensor | None = None):
        super().__init__(latent_dim, data_dim)
        W = torch.randn(data_dim, latent_dim) if W is None else torch.as_tensor(W)
        b = torch.zeros(data_dim, dtype=W.dtype) if b is None else torch.as_tensor(b, dtype=W.dtype)
        psi = torch.ones(data_dim, dtype=W.dtype) if psi is None else torch.as_tensor(psi, dtype=W.dtype)
        if W.shape != (data_dim, latent_dim):
            raise ConfigError(f"W has shape {tuple(W.shape)}; expected ({data_dim}, {latent_dim})")
        if b.shape != (data_dim,) or psi.shape != (data_dim,) or not bool((psi > 0).all()):
            raise ConfigError("b and psi must have shape (data_dim,) and psi must be positive")
        self.W = nn.Parameter(W.clone())
        self.b = nn.Parameter(b.clone())
        self.psi = PyroParam(psi.clone(), constraint=constraints.positive)

    @classmethod
    def random(cls, data_dim: int, latent_dim: int, scale: float = 1.0, shared: float = 0.0, psi: float = 1.0,
               seed: int = 0, dtype=torch.float64) -> "LinearGaussian":
        r"""A seeded random instance: :math:`W = \text{scale}\,(G + \text{shared}\cdot G_{:,1}\mathbf 1^\top)`
        with :math:`G` standard normal, :math:`b = 0`, :math:`\psi` constant. ``shared`` > 0 mixes the
        first column into every column, which correlates the posterior (a larger FFG approximation gap)."""
        g = torch.randn(data_dim, latent_dim, generator=torch.Generator().manual_seed(seed), dtype=dtype)
        return cls(data_dim, latent_dim, W=scale * (g + shared * g[:, :1]),
                   psi=torch.full((data_dim,), float(psi), dtype=dtype))

    def likelihood(self, z):
        return dist.Normal(z @ self.W.T + self.b, self.psi.sqrt(), validate_args=False).to_event(1)

    def validate_data(self, x):
        x = validate_continuous(x)
        self._check_width(x)
        return x

    # ----- closed forms (used only by tests and validation reports, never by the estimators) -----
    @torch.no_grad()
    def posterior_precision(self) -> torch.Tensor:
        """:math:`\\Lambda = I + W^\\top \\Psi^{-1} W`, shape ``(d, d)``."""
        W, psi = self.W, self.psi
        return torch.eye(self.latent_dim, dtype=W.dtype, device=W.device) + (W.T / psi) @ W

    @torch.no_grad()
    def exact_posterior(self, x: torch.Tensor) -> dist.MultivariateNormal:
        """:math:`p(z\\mid x)` for every row of ``x``: batch shape ``(N,)``, event ``(d,)``."""
        prec = self.posterior_precision()
        mean = torch.linalg.solve(prec, ((x - self.b) / self.psi @ self.W).T).T
        return dist.MultivariateNormal(mean, precision_matrix=prec.expand(x.shape[0], -1, -1))

    @torch.no_grad()
    def exact_log_marginal(self, x: torch.Tensor) -> torch.Tensor:
        """:math:`\\log p(x)`, shape ``(N,)``, with all constants."""
        cov = self.W @ self.W.T + torch.diag(self.psi)
        return dist.MultivariateNormal(self.b, covariance_matrix=cov).log_prob(x)

    @torch.no_grad()
    def exact_ffg_gap(self) -> torch.Tensor:
        """Approximation gap of the optimal fully factorized Gaussian (same for every ``x``)."""
        prec = self.posterior_precision()
        return 0.5 * (prec.diagonal().log().sum() - torch.logdet(prec))
