r"""Inverse autoregressive flow on an FFG base (Kingma et al. 2016).

.. math::

    z_0 = \mu(x) + \sigma(x)\circ\epsilon, \qquad
    z_k = s_k\circ z_{k-1} + (1-s_k)\circ m_k, \quad
    (m_k, \mathrm{logit}\,s_k) = \mathrm{MADE}_k(z_{k-1}, h), \quad s_k = \mathrm{sigmoid}(\mathrm{logit}\,s_k + 2),

for :math:`k = 1..K` (``num_transforms``, K ∈ {1, 2, 4, 8}); :math:`m_k, s_k` at coordinate ``i``
depend only on coordinates before ``i`` (in the step's order, reversed after every step as in the
paper), so :math:`\log|\det\partial z_k/\partial z_{k-1}| = \sum_i \log s_{k,i}` (``logsigmoid``) and

.. math::

    \log q(z_K\mid x) = \log\mathcal N(z_0;\mu,\sigma^2) - \sum_k\sum_i \log s_{k,i}.

This is Pyro's numerically stable ``AffineAutoregressive`` (``stable=True``, the LSTM-style update
of Kingma et al.) inside a :class:`~pyro.distributions.TransformedDistribution`, so ``log_prob`` is
exact (cached from the draw; inverted exactly for other points).

* :class:`IAFEncoder` — amortized: the encoder's last hidden layer :math:`h` is the context of every
  MADE (:class:`~pyro.distributions.transforms.ConditionalAffineAutoregressive`), as in the paper.
* :class:`LocalIAF` — per datum: base mean/scale and every MADE free per datapoint
  (:class:`pyro_vaegap.guides._batched.BatchedMADE`); no context is needed.
"""
from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch
from pyro.distributions.transforms import AffineAutoregressive, ConditionalAffineAutoregressive
from pyro.nn import ConditionalAutoRegressiveNN
from torch import nn

from pyro_vaegap.contract.guide import Family, Guide
from pyro_vaegap.models import ACTIVATIONS
from pyro_vaegap.models.networks import encoder_body
from pyro_vaegap.utils import check_positive_int
from .ffg import LocalFFG
from ._batched import BatchedMADE, gaussian_head


def orders(dim: int, count: int):
    """Variable orders of the ``count`` steps: identity, reversed, identity, … (Kingma et al.)."""
    ident = torch.arange(dim)
    return [ident if k % 2 == 0 else ident.flip(0) for k in range(count)]


class IAFEncoder(Guide):
    """Amortized IAF: an encoder ``x → h → (μ, σ)`` plus ``num_transforms`` MADEs conditioned on ``h``.

    :param hidden, layers, activation, dense, arch: the encoder (as ``ffg``).
    :param made_hidden: width of each MADE's hidden layer (default ``max(2d, 16)``; must be ≥ d).
    """

    def __init__(self, model, num_transforms: int = 2, hidden: int = 200, layers: int = 2,
                 activation: str = "elu", dense: bool = False, arch: str = "mlp",
                 made_hidden: int | None = None):
        super().__init__(model)
        d = self.latent_dim
        K = check_positive_int("num_transforms", num_transforms)
        self.body, width = encoder_body(self.data_dim, hidden, layers, activation, dense, arch)
        self.head = nn.Linear(width, 2 * d)
        made_hidden = made_hidden or max(2 * d, 16)
        self.flows = nn.ModuleList(
            ConditionalAffineAutoregressive(
                ConditionalAutoRegressiveNN(d, width, [made_hidden], permutation=perm,
                                            nonlinearity=ACTIVATIONS[activation]()),
                stable=True)
            for perm in orders(d, K))

    def distribution(self, x):
        """:math:`q(z\\mid x)` as a TransformedDistribution of batch shape ``(B,)``."""
        h = self.body(x)
        base = dist.Normal(*gaussian_head(self.head(h), self.latent_dim)).to_event(1)
        return dist.TransformedDistribution(base, [f.condition(h) for f in self.flows])

    def encode(self, x):
        """The base FFG's ``(loc, scale)`` (per-datum guides may start from it)."""
        return gaussian_head(self.head(self.body(x)), self.latent_dim)

    def forward(self, x, idx=None, num_data=None):
        q = self.distribution(x)
        with self.data_plate(x, idx, num_data):
            return self.sample_latents(q)


class LocalIAF(LocalFFG):
    """Per-datum IAF: ``loc``, ``scale`` ``(N, d)`` and ``num_transforms`` per-datapoint MADEs."""

    def __init__(self, model, num_data: int, num_transforms: int = 2, made_hidden: int | None = None,
                 activation: str = "elu", init_scale: float = 1.0):
        super().__init__(model, num_data, init_scale)  # the FFG base: loc, scale
        d = self.latent_dim
        K = check_positive_int("num_transforms", num_transforms)
        made_hidden = made_hidden or max(2 * d, 16)
        self.mades = nn.ModuleList(BatchedMADE(num_data, d, [made_hidden], perm, activation)
                                   for perm in orders(d, K))

    def forward(self, x, idx=None, num_data=None):
        rows = self.rows(x, idx)
        base = dist.Normal(self.loc[rows], self.scale[rows]).to_event(1)
        q = dist.TransformedDistribution(base, [AffineAutoregressive(m.bind(rows), stable=True)
                                                for m in self.mades])
        with self.data_plate(x, idx, num_data):
            return self.sample_latents(q)


FAMILY = Family("iaf", amortized=IAFEncoder, local=LocalIAF,
                description="inverse autoregressive flow (Kingma et al. 2016), K MADE steps on an FFG base")
