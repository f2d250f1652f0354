r"""Full-covariance Gaussian (Cremer et al. 2018, appendix 6.7): :math:`q(z\mid x)=\mathcal N(\mu, LL^\top)`.

:math:`L` is lower triangular with a positive diagonal (a Cholesky factor), so
:math:`\log q(z) = -\tfrac d2\log 2\pi - \sum_i \log L_{ii} - \tfrac12\|L^{-1}(z-\mu)\|^2` is exact
(:class:`~pyro.distributions.MultivariateNormal` with ``scale_tril``) and
:math:`z = \mu + L\epsilon` is reparameterized.

* :class:`FullCovEncoder` — amortized: an MLP ``x → h → (μ, L)`` whose head outputs ``d`` means,
  ``d`` raw diagonal entries (``L_ii = softplus(raw) + 1e-5``) and the ``d(d-1)/2`` strictly lower
  entries.
* :class:`LocalFullCov` — per datum: a free mean ``(N, d)`` and Cholesky factor ``(N, d, d)``
  (a :class:`~pyro.nn.PyroParam` constrained to ``lower_cholesky``: the optimizer works on the
  strictly lower entries and the log of the diagonal).
"""
from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch
from pyro.nn import PyroParam
from torch import nn
from torch.distributions import constraints

from pyro_vaegap.contract.guide import Family, Guide, LocalGuide, gaussian_output
from pyro_vaegap.models.networks import encoder_body
from ._batched import MIN_SCALE


class FullCovEncoder(Guide):
    """Amortized full-covariance Gaussian; ``hidden``, ``layers``, ``activation``, ``dense``, ``arch`` as for ``ffg``.

    :meth:`encode` returns ``(loc (B, d), scale_tril (B, d, d))``.
    """

    def __init__(self, model, hidden: int = 200, layers: int = 2, activation: str = "elu",
                 dense: bool = False, arch: str = "mlp"):
        super().__init__(model)
        d = self.latent_dim
        self.body, width = encoder_body(self.data_dim, hidden, layers, activation, dense, arch)
        self.head = nn.Linear(width, 2 * d + d * (d - 1) // 2)
        self.register_buffer("tril_rows", torch.tril_indices(d, d, -1)[0], persistent=False)
        self.register_buffer("tril_cols", torch.tril_indices(d, d, -1)[1], persistent=False)

    def encode(self, x):
        d = self.latent_dim
        loc, raw_diag, off = self.head(self.body(x)).split([d, d, d * (d - 1) // 2], dim=-1)
        L = torch.diag_embed(nn.functional.softplus(raw_diag) + MIN_SCALE)
        L[..., self.tril_rows, self.tril_cols] = off  # fresh tensor: in-place is autograd-safe
        return loc, L

    def forward(self, x, idx=None, num_data=None):
        loc, L = self.encode(x)
        with self.data_plate(x, idx, num_data):
            return self.sample_latents(dist.MultivariateNormal(loc, scale_tril=L))


class LocalFullCov(LocalGuide):
    """Per-datum full-covariance Gaussian: ``loc (N, d)`` and ``scale_tril (N, d, d)``.

    Initialized at the prior (``loc = 0``, ``scale_tril = init_scale · I``) or at an encoder's output
    (:meth:`init_from_amortized`: an FFG's diagonal or a full-covariance encoder's factor).
    """

    def __init__(self, model, num_data: int, init_scale: float = 1.0):
        super().__init__(model, num_data)
        d = self.latent_dim
        self.loc = PyroParam(torch.zeros(num_data, d))
        self.scale_tril = PyroParam(float(init_scale) * torch.eye(d).expand(num_data, d, d).clone(),
                                    constraint=constraints.lower_cholesky)

    def forward(self, x, idx=None, num_data=None):
        rows = self.rows(x, idx)
        with self.data_plate(x, idx, num_data):
            return self.sample_latents(dist.MultivariateNormal(self.loc[rows], scale_tril=self.scale_tril[rows]))

    @torch.no_grad()
    def init_from_amortized(self, guide, x):
        out = guide.encode(x)[:2] if hasattr(guide, "encode") else gaussian_output(guide, x, self.spec)
        if out is None:
            super().init_from_amortized(guide, x)
        loc, scale = out
        if scale.dim() == loc.dim():  # an FFG's standard deviations
            scale = torch.diag_embed(scale)
        self.loc = loc.detach().clone()
        self.scale_tril = scale.detach().clone()


FAMILY = Family("fullcov", amortized=FullCovEncoder, local=LocalFullCov,
                description="full-covariance Gaussian (encoder outputs mean and Cholesky factor / free per datapoint)")
