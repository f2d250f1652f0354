r"""A worked example of a plug-in family: a diagonal Student-t posterior.

.. math::

    q(z\mid x) = \prod_{i=1}^d \mathrm{St}_\nu\big(z_i;\ \mu_i(x), s_i(x)\big)

with fixed degrees of freedom :math:`\nu` (option ``df``). Heavier tails than the FFG, still
reparameterized (:math:`z = \mu + s\,t`, :math:`t\sim\mathrm{St}_\nu(0,1)`) and with an exact
``log_prob`` — which is all the contract asks for.

Copy this file to ``guides/my_guide.py`` (or name its module in a ``pyro_vaegap.guides`` entry point
of your own package) and ``vaegap train --guide my_guide`` and the gap report find the family;
nothing else needs editing.
"""
import pyro
import pyro.distributions as dist
import torch
from pyro.nn import PyroParam
from torch import nn
from torch.distributions import constraints

from pyro_vaegap.contract.guide import Family, Guide, LocalGuide
from pyro_vaegap.models import data_plate, mlp


class StudentTEncoder(Guide):
    """Amortized: an MLP ``x → (μ(x), s(x))``; ``s = softplus(raw) + 1e-5``."""

    def __init__(self, model, hidden: int = 200, df: float = 5.0):
        super().__init__(model)  # sets self.latent_dim and self.data_dim
        self.df = float(df)
        self.net = mlp([model.data_dim, hidden, 2 * model.latent_dim], "elu")

    def encode(self, x):
        loc, raw = self.net(x).split(self.latent_dim, dim=-1)
        return loc, nn.functional.softplus(raw) + 1e-5

    def forward(self, x, idx=None, num_data=None):
        loc, scale = self.encode(x)  # (B, d): computed outside the plate, broadcast inside it
        with data_plate(x, idx, num_data):  # contract (a): the model's latent site "z", in the data plate
            return pyro.sample("z", dist.StudentT(self.df, loc, scale).to_event(1))


class LocalStudentT(LocalGuide):
    """Per datum: free ``loc`` and ``scale`` of shape ``(num_data, d)`` (contract (c))."""

    def __init__(self, model, num_data: int, df: float = 5.0):
        super().__init__(model, num_data)
        self.df = float(df)
        self.loc = PyroParam(torch.zeros(num_data, self.latent_dim))
        self.scale = PyroParam(torch.ones(num_data, self.latent_dim), constraint=constraints.positive)

    def forward(self, x, idx=None, num_data=None):
        rows = self.rows(x, idx)  # the global indices of this batch's datapoints
        with data_plate(x, idx, num_data):
            return pyro.sample("z", dist.StudentT(self.df, self.loc[rows], self.scale[rows]).to_event(1))

    @torch.no_grad()
    def init_from_amortized(self, guide, x):
        loc, scale = guide.encode(x)
        self.loc, self.scale = loc.clone(), scale.clone()


FAMILY = Family("my_guide", amortized=StudentTEncoder, local=LocalStudentT,
                description="diagonal Student-t (worked example of a plug-in family)")
