r"""Isotropic Gaussian: :math:`q(z\mid x) = \mathcal N(\mu(x), N(x)\, I_d)` with one scalar variance per datapoint.

The posterior family of R. Yu's noisy-Gaussian-channel reading of a VAE (tutorial §4.3): each of the
:math:`d` coordinates of :math:`\mu` is one use of a channel with power
:math:`P(x) = \lVert\mu(x)\rVert^2/d` and noise :math:`N(x)`; the regularization term is

.. math::

    L_\mathrm{reg}(x) = D_\mathrm{KL}\big(\mathcal N(\mu, N I)\,\|\,\mathcal N(0, I)\big)
    = \tfrac d2\big(P + N - 1\big) - \tfrac d2\log N,

which is the capacity :math:`-\tfrac d2\log N` of :math:`d` channel uses exactly when :math:`P + N = 1`.

* :class:`IsotropicEncoder` — amortized: an MLP ``x → h → (μ(x), N(x))``. With
  ``power_constraint=True`` the encoder is the tutorial's channel encoder: it outputs a raw vector
  :math:`m` and sets :math:`\mu = m/\sqrt{1 + \lVert m\rVert^2/d}`, :math:`N = 1/(1 + \lVert m\rVert^2/d)`,
  so that :math:`P + N = 1` for every ``x`` (eq. 36's :math:`N_\phi(x) = 1 - P_\phi(x)`).
* :class:`LocalIsotropic` — per datum: a free mean ``(N, d)`` and scale ``(N,)``.
"""
from __future__ import annotations

import pyro.distributions as dist
import torch
from pyro.nn import PyroParam
from torch import nn
from torch.distributions import constraints

from pyro_vaegap.contract.guide import Family, Guide, LocalGuide
from pyro_vaegap.models.networks import encoder_body
from pyro_vaegap.utils import ConfigError

from ._batched import MIN_SCALE


def isotropic_normal(loc: torch.Tensor, scale: torch.Tensor) -> dist.Distribution:
    """:math:`\\mathcal N(\\text{loc}, \\text{scale}^2 I)` as one event; ``scale`` has ``loc``'s shape without its last dimension."""
    return dist.Normal(loc, scale.unsqueeze(-1).expand_as(loc)).to_event(1)


class IsotropicEncoder(Guide):
    """Amortized isotropic Gaussian; ``hidden``, ``layers``, ``activation``, ``dense``, ``arch`` as for ``ffg``.

    :param power_constraint: the channel encoder (``P(x) + N(x) = 1`` for every ``x``; see the module).

    :meth:`encode` returns ``(loc (B, d), scale (B,))``, ``scale`` the standard deviation :math:`\\sqrt{N(x)}`.
    """

    def __init__(self, model, hidden: int = 200, layers: int = 2, activation: str = "elu",
                 dense: bool = False, arch: str = "mlp", power_constraint: bool = False):
        super().__init__(model)
        if not isinstance(power_constraint, bool):
            raise ConfigError(f"power_constraint={power_constraint!r} is not allowed: expected true or false")
        self.power_constraint = power_constraint
        self.body, width = encoder_body(self.data_dim, hidden, layers, activation, dense, arch)
        self.head = nn.Linear(width, self.latent_dim + (0 if power_constraint else 1))

    def encode(self, x):
        out = self.head(self.body(x))
        if self.power_constraint:
            # mu = m / sqrt(1 + |m|^2/d), N = 1 / (1 + |m|^2/d): P = 1 - N, and N > 0 for every finite m
            shrink = 1.0 + out.pow(2).mean(-1)
            return out / shrink.sqrt().unsqueeze(-1), shrink.rsqrt()
        loc, raw = out.split([self.latent_dim, 1], dim=-1)
        return loc, nn.functional.softplus(raw.squeeze(-1)) + MIN_SCALE

    def forward(self, x, idx=None, num_data=None):
        loc, scale = self.encode(x)
        with self.data_plate(x, idx, num_data):
            return self.sample_latents(isotropic_normal(loc, scale))


class LocalIsotropic(LocalGuide):
    """Per-datum isotropic Gaussian: parameters ``loc`` ``(num_data, d)`` and ``scale`` ``(num_data,)``
    (positive-constrained, so the optimizer works on ``log scale``)."""

    row_subsets = True

    def __init__(self, model, num_data: int, init_scale: float = 1.0):
        super().__init__(model, num_data)
        self.loc = PyroParam(torch.zeros(num_data, self.latent_dim))
        self.scale = PyroParam(torch.full((num_data,), float(init_scale)), constraint=constraints.positive)

    def forward(self, x, idx=None, num_data=None):
        rows = self.rows(x, idx)
        with self.data_plate(x, idx, num_data):
            return self.sample_latents(isotropic_normal(self.loc[rows], self.scale[rows]))

    @torch.no_grad()
    def init_from_amortized(self, guide, x):
        """Start at an isotropic encoder's ``encode(x)``."""
        out = guide.encode(x) if hasattr(guide, "encode") else None
        if out is None or out[1].shape != out[0].shape[:-1]:
            raise ConfigError(f"{type(self).__name__} can start only from an isotropic encoder "
                              f"(encode(x) -> (loc (B, d), scale (B,))); got {type(guide).__name__}")
        self.loc = out[0].detach().clone()
        self.scale = out[1].detach().clone()


FAMILY = Family("isotropic", amortized=IsotropicEncoder, local=LocalIsotropic,
                description="isotropic Gaussian N(mu, N I), one variance per datapoint (Yu 2020, §4.3)")
