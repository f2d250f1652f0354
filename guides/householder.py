r"""Householder flow on an FFG base (Tomczak & Welling 2016).

.. math::

    z_0 = \mu(x) + \sigma(x)\circ\epsilon, \qquad
    z_k = H_k z_{k-1},\quad H_k = I - 2\,\frac{u_k u_k^\top}{\|u_k\|^2}, \qquad k = 1..K,

(``num_transforms`` K ∈ {1, 2, 4, 8}). Each :math:`H_k` is an orthogonal reflection, so the flow is
volume preserving: :math:`\log q(z_K\mid x) = \log\mathcal N(H_1\cdots H_K z_K;\mu,\sigma^2)`
(:math:`H_k^{-1} = H_k`), i.e. a Gaussian with the full covariance
:math:`U\,\mathrm{diag}\,\sigma^2 U^\top`, :math:`U = H_K\cdots H_1`.

The Householder vectors come from the encoder, as in the paper: :math:`u_1 = W_1 h(x) + b_1` from
the encoder's last hidden layer and :math:`u_{k+1} = W_{k+1} u_k + b_{k+1}`
(:class:`HouseholderVectors`), applied with Pyro's
:class:`~pyro.distributions.transforms.ConditionalHouseholder` inside a
:class:`~pyro.distributions.TransformedDistribution` (exact ``log_prob``).

* :class:`HouseholderEncoder` — amortized.
* :class:`LocalHouseholder` — per datum: base mean/scale ``(N, d)`` and free vectors ``u (N, K, d)``
  (:class:`~pyro.distributions.transforms.ConditionedHouseholder`).
"""
from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch
from pyro.distributions.transforms import ConditionalHouseholder
from pyro.distributions.transforms.householder import ConditionedHouseholder
from torch import nn

from pyro_vaegap.contract.guide import Family, Guide
from pyro_vaegap.models.networks import encoder_body
from pyro_vaegap.utils import check_positive_int
from .ffg import LocalFFG
from ._batched import gaussian_head


class HouseholderVectors(nn.Module):
    """``h ↦ [u_1, …, u_K]`` by Tomczak & Welling's recursion (a list for ``K > 1``, as Pyro's
    :class:`~pyro.distributions.transforms.ConditionalHouseholder` expects)."""

    def __init__(self, context_dim: int, dim: int, count: int):
        super().__init__()
        self.first = nn.Linear(context_dim, dim)
        self.rest = nn.ModuleList(nn.Linear(dim, dim) for _ in range(count - 1))

    def forward(self, h):
        us = [self.first(h)]
        for layer in self.rest:
            us.append(layer(us[-1]))
        return us if len(us) > 1 else us[0]


class HouseholderEncoder(Guide):
    """Amortized Householder flow; ``hidden``, ``layers``, ``activation``, ``dense``, ``arch`` as for ``ffg``."""

    def __init__(self, model, num_transforms: int = 2, hidden: int = 200, layers: int = 2,
                 activation: str = "elu", dense: bool = False, arch: str = "mlp"):
        super().__init__(model)
        K = check_positive_int("num_transforms", num_transforms)
        d = self.latent_dim
        self.body, width = encoder_body(self.data_dim, hidden, layers, activation, dense, arch)
        self.head = nn.Linear(width, 2 * d)
        self.flow = ConditionalHouseholder(d, HouseholderVectors(width, d, K), count_transforms=K)

    def encode(self, x):
        """The base FFG's ``(loc, scale)``."""
        return gaussian_head(self.head(self.body(x)), self.latent_dim)

    def forward(self, x, idx=None, num_data=None):
        h = self.body(x)
        base = dist.Normal(*gaussian_head(self.head(h), self.latent_dim)).to_event(1)
        q = dist.TransformedDistribution(base, [self.flow.condition(h)])
        with self.data_plate(x, idx, num_data):
            return self.sample_latents(q)


class LocalHouseholder(LocalFFG):
    """Per-datum Householder flow: ``loc``, ``scale`` ``(N, d)`` and ``u (N, K, d)``.

    ``u`` starts uniform in ``±1/sqrt(d)`` (Pyro's ``Householder`` initialization), per datapoint.
    """

    def __init__(self, model, num_data: int, num_transforms: int = 2, init_scale: float = 1.0):
        super().__init__(model, num_data, init_scale)  # the FFG base: loc, scale
        K = check_positive_int("num_transforms", num_transforms)
        d = self.latent_dim
        self.u = nn.Parameter(torch.empty(num_data, K, d).uniform_(-d ** -0.5, d ** -0.5))

    def forward(self, x, idx=None, num_data=None):
        rows = self.rows(x, idx)
        base = dist.Normal(self.loc[rows], self.scale[rows]).to_event(1)
        q = dist.TransformedDistribution(base, [ConditionedHouseholder(self.u[rows])])
        with self.data_plate(x, idx, num_data):
            return self.sample_latents(q)


FAMILY = Family("householder", amortized=HouseholderEncoder, local=LocalHouseholder,
                description="Householder flow (Tomczak & Welling 2016), K reflections on an FFG base")
