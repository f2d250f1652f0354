r"""Auxiliary-variable Real-NVP-style flow (Cremer, Li & Duvenaud 2018, §3.2, eqs. 12–14, Table 8).

An auxiliary :math:`v\in\mathbb R^d` is drawn beside :math:`z`:

.. math::

    z_0 \sim q(z_0\mid x) = \mathcal N(\mu(x), \mathrm{diag}\,\sigma^2(x)), \qquad
    v_0 \sim q(v_0\mid z_0) = \mathcal N(\mu_v(z_0), \mathrm{diag}\,\sigma_v^2(z_0)),

then ``num_steps`` (2 for MNIST) coupling steps, each

.. math::

    v' = v\circ\sigma_1(z) + \mu_1(z), \qquad z' = z\circ\sigma_2(v') + \mu_2(v'),

with :math:`\sigma_i = \mathrm{sigmoid}(a_i + 3)/\mathrm{sigmoid}(3)\in(0, 1.05)`, so
:math:`\log|\det Df| = \sum\log\sigma_1 + \sum\log\sigma_2` summed over steps, computed with
``logsigmoid`` (no ``log`` of an underflowed sigmoid). At :math:`a_i = 0` the scale is exactly 1, and
every network's output layer starts at zero, so **every coupling starts as the identity**
(:math:`\mu_i = 0`, :math:`\sigma_i = 1`) and :math:`q(v_0\mid z_0)` and :math:`r(v_T\mid x, z_T)`
start as the same Gaussian: at initialization :math:`z_T = z_0` and the auxiliary bound of every draw
equals the base FFG's bound of the same :math:`z_0`. A flow therefore starts exactly where its base
starts (the prior, or an encoder's output with ``--local-init encoder``), and the per-datum
optimization can only move it away from there by improving the bound. A reverse
model :math:`r(v_T\mid x, z_T) = \mathcal N(\mu_r(z_T), \mathrm{diag}\,\sigma_r^2(z_T))` closes the
auxiliary bound (eq. 14):

.. math::

    \mathcal L = \mathbb E\big[\log p(x, z_T) + \log r(v_T\mid x, z_T) - \log q(z_0, v_0\mid x)
    + \log|\det Df|\big] \le \log p(x).

How this maps onto the guide contract (:mod:`pyro_vaegap.contract.guide`): ``"z0"`` and ``"v0"`` are
auxiliary sample sites (reparameterized Normals); the model's site ``"z"`` holds
:math:`z_T` as a :class:`~pyro.distributions.Delta` whose ``log_density`` is
:math:`-\log|\det Df|` (the value carries the pathwise gradient of the whole flow); the reverse
model is ``pyro.factor("flow_reverse", -log r(v_T|x,z_T), has_rsample=True)``. The guide trace's
total log-density is therefore :math:`\log q(z_0,v_0\mid x) - \log|\det Df| - \log r(v_T\mid x,z_T)`,
Pyro's ``Trace_ELBO`` optimizes eq. 14 with pathwise gradients, and the importance weights
:math:`p(x,z_T)\,r(v_T\mid x,z_T)/q(z_T,v_T\mid x)` are unbiased for :math:`p(x)` (eqs. 7–8).

Networks (each ``d → h → h → 2d``, ELU; ``h = flow_hidden``, 100 in the paper for ``d = 50``):
``q(v0|z0)``, the reverse model, and per step one network of ``z`` giving :math:`(a_1, \mu_1)` and one
of ``v'`` giving :math:`(a_2, \mu_2)` (one trunk for a scale and its shift). As in Table 8 the
reverse model takes :math:`z_T` only; its dependence on ``x`` is through :math:`z_T` (amortized) or
through its per-datapoint parameters (per datum).

* :class:`FlowEncoder` — amortized: the FFG encoder gives the base; flow networks are shared.
* :class:`LocalFlow` — per datum: **every** parameter (base mean/scale, ``q(v0|z0)``, flow networks
  and reverse model, biases included) is free per datapoint — shapes ``(N, ...)``, hidden layers
  Xavier-initialized, output layers zero — and evaluated with batched contractions (:mod:`pyro_vaegap.guides._batched`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import pyro
import pyro.distributions as dist
import torch
from torch import nn
from torch.nn.functional import logsigmoid

from pyro_vaegap.contract.guide import Family, Guide
from pyro_vaegap.models import mlp
from pyro_vaegap.utils import ConfigError, check_positive_int
from ._batched import BatchedMLP, gaussian_head
from .ffg import FFGEncoder, LocalFFG

SCALE_OFFSET = 3.0  #: σ = sigmoid(a + 3) / sigmoid(3): exactly 1 at a = 0, at most 1.05
_LOG_SIGMOID_OFFSET = float(logsigmoid(torch.tensor(SCALE_OFFSET, dtype=torch.float64)))
AUX = {"is_auxiliary": True}


def _log_scale(a: torch.Tensor) -> torch.Tensor:
    """log σ(a) = log sigmoid(a + 3) − log sigmoid(3): 0 at a = 0, finite where sigmoid underflows."""
    return logsigmoid(a + SCALE_OFFSET) - _LOG_SIGMOID_OFFSET


def zero_output_layer(net: nn.Module) -> None:
    """Zero the weights and biases of ``net``'s last affine layer (an ``nn.Sequential`` ending in
    ``nn.Linear`` or a :class:`~pyro_vaegap.guides._batched.BatchedMLP`), so its output starts at 0."""
    last = net.layers[-1] if hasattr(net, "layers") else net[-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.zero_()


def coupling_flow(z0: torch.Tensor, v0: torch.Tensor, steps):
    r"""Apply the coupling steps to ``(z0, v0)``, both of shape ``(..., B, d)``.

    :param steps: a sequence of pairs ``(f_z, f_v)``; ``f_z(z)`` returns :math:`(a_1, \mu_1)` and
        ``f_v(v')`` returns :math:`(a_2, \mu_2)`, each of the input's shape.
    :returns: ``(z_T, v_T, log_det)`` with ``log_det`` of shape ``(..., B)``.
    """
    z, v = z0, v0
    log_det = z0.new_zeros(z0.shape[:-1])
    for f_z, f_v in steps:
        a1, mu1 = f_z(z)
        s1 = _log_scale(a1)
        v = v * s1.exp() + mu1
        a2, mu2 = f_v(v)
        s2 = _log_scale(a2)
        z = z * s2.exp() + mu2
        log_det = log_det + s1.sum(-1) + s2.sum(-1)
    return z, v, log_det


def inverse_coupling_flow(zT: torch.Tensor, vT: torch.Tensor, steps):
    r"""Invert :func:`coupling_flow`: ``(z_0, v_0, log_det)``, ``log_det`` being the *forward* map's
    :math:`\log|\det Df|` at ``(z_0, v_0)`` (used to evaluate :math:`q(z_T, v_T\mid x)` anywhere)."""
    z, v = zT, vT
    log_det = zT.new_zeros(zT.shape[:-1])
    for f_z, f_v in reversed(steps):
        a2, mu2 = f_v(v)
        s2 = _log_scale(a2)
        z = (z - mu2) * (-s2).exp()
        a1, mu1 = f_z(z)
        s1 = _log_scale(a1)
        v = (v - mu1) * (-s1).exp()
        log_det = log_det + s1.sum(-1) + s2.sum(-1)
    return z, v, log_det


@dataclass
class FlowParts:
    r"""Everything that defines :math:`q(z_0,v_0\mid x)`, the flow and :math:`r` for a batch.

    ``loc``, ``scale``: the base FFG ``(B, d)``; ``q_v``: ``z0 ↦ (loc, scale)`` of
    :math:`q(v_0\mid z_0)`; ``steps``: as in :func:`coupling_flow`; ``reverse``: ``z_T ↦ (loc, scale)``
    of :math:`r(v_T\mid x, z_T)`. Callables accept any leading sample dimensions ``(..., B, d)``.
    """

    loc: torch.Tensor
    scale: torch.Tensor
    q_v: Callable
    steps: list
    reverse: Callable

    def sample(self, guide=None):
        """The guide's sites (call inside the data plate); ``guide`` places :math:`z_T` at the model's latent
        sites (:meth:`~pyro_vaegap.contract.guide.Guide.sample_latents`; without it: the site ``"z"``); returns :math:`z_T`."""
        z0 = pyro.sample("z0", dist.Normal(self.loc, self.scale).to_event(1), infer=AUX)
        v0 = pyro.sample("v0", dist.Normal(*self.q_v(z0)).to_event(1), infer=AUX)
        zT, vT, log_det = coupling_flow(z0, v0, self.steps)
        q = dist.Delta(zT, log_density=-log_det, event_dim=1)
        z = pyro.sample("z", q) if guide is None else guide.sample_latents(q)
        pyro.factor("flow_reverse", -self.log_reverse(zT, vT), has_rsample=True)
        return z

    def log_reverse(self, zT, vT):
        r""":math:`\log r(v_T\mid x, z_T)`, shape ``(..., B)``."""
        return dist.Normal(*self.reverse(zT)).to_event(1).log_prob(vT)

    def log_joint(self, zT, vT):
        r""":math:`\log q(z_T, v_T\mid x) = \log q(z_0\mid x) + \log q(v_0\mid z_0) - \log|\det Df|`
        at any ``(z_T, v_T)`` of shape ``(..., B, d)`` (inverting the flow)."""
        z0, v0, log_det = inverse_coupling_flow(zT, vT, self.steps)
        return (dist.Normal(self.loc, self.scale).to_event(1).log_prob(z0)
                + dist.Normal(*self.q_v(z0)).to_event(1).log_prob(v0) - log_det)


def head_split(net, d, *extra):
    """``h ↦ (a, μ)``: the two halves of ``net(h, *extra)`` (scale logit, shift)."""
    return lambda h: net(h, *extra).split(d, dim=-1)


def head_gaussian(net, d, *extra):
    """``h ↦ (loc, scale)`` of a Gaussian from ``net(h, *extra)``."""
    return lambda h: gaussian_head(net(h, *extra), d)


class FlowEncoder(Guide):
    """Amortized auxiliary flow: :class:`~pyro_vaegap.guides.ffg.FFGEncoder` base plus shared flow networks.

    :param hidden, layers, activation, arch: the base encoder (as ``ffg``).
    :param flow_hidden: width ``h`` of the flow, ``q(v0|z0)`` and reverse networks (paper: 100).
    :param num_steps: coupling steps (paper: 2).
    """

    def __init__(self, model, hidden: int = 200, layers: int = 2, activation: str = "elu",
                 flow_hidden: int = 100, num_steps: int = 2, arch: str = "mlp"):
        super().__init__(model)
        d, h = self.latent_dim, flow_hidden
        check_positive_int("num_steps", num_steps)
        self.base = FFGEncoder(model, hidden, layers, activation, arch=arch)

        def net():
            return mlp([d, h, h, 2 * d], "elu")

        self.q_v, self.reverse = net(), net()
        self.nets = nn.ModuleList(net() for _ in range(2 * num_steps))
        for n in self.flow_networks():
            zero_output_layer(n)

    def flow_networks(self) -> list:
        """``q(v0|z0)``, the reverse model, then the coupling networks, in a fixed order."""
        return [self.q_v, self.reverse, *self.nets]

    def encode(self, x):
        """The base FFG's ``(loc, scale)``, so per-datum guides can start from it."""
        return self.base.encode(x)

    def parts(self, x, idx=None) -> FlowParts:
        d, nets = self.latent_dim, self.nets
        return FlowParts(*self.base.encode(x), head_gaussian(self.q_v, d),
                         [(head_split(nets[i], d), head_split(nets[i + 1], d)) for i in range(0, len(nets), 2)],
                         head_gaussian(self.reverse, d))

    def forward(self, x, idx=None, num_data=None):
        parts = self.parts(x, idx)
        with self.data_plate(x, idx, num_data):
            return parts.sample(self)


class LocalFlow(LocalFFG):
    """Per-datum auxiliary flow: all parameters have leading dimension ``num_data``.

    :param flow_hidden: width ``h`` of every per-datapoint network (paper: 100).
    :param num_steps: coupling steps. ``init_scale``: initial base scale (base mean 0: the prior).
    """

    def __init__(self, model, num_data: int, flow_hidden: int = 100, num_steps: int = 2,
                 activation: str = "elu", init_scale: float = 1.0):
        super().__init__(model, num_data, init_scale)  # the FFG base: loc, scale
        d, h, N = self.latent_dim, flow_hidden, num_data
        self.activation = activation
        check_positive_int("num_steps", num_steps)

        def net():
            return BatchedMLP(N, [d, h, h, 2 * d], activation)

        self.q_v, self.reverse = net(), net()
        self.nets = nn.ModuleList(net() for _ in range(2 * num_steps))
        for n in self.flow_networks():
            zero_output_layer(n)

    def flow_networks(self) -> list:
        """``q(v0|z0)``, the reverse model, then the coupling networks (as :meth:`FlowEncoder.flow_networks`)."""
        return [self.q_v, self.reverse, *self.nets]

    @torch.no_grad()
    def init_from_amortized(self, guide, x):
        """Start at the amortized guide's q for each row of ``x``: the base at ``guide.encode(x)``
        and, from a :class:`FlowEncoder` of the same sizes, every flow network copied into every
        datapoint's row — the amortized flow's networks read only :math:`z` and :math:`v`, so the
        per-datum flow then *is* the amortized q. From any other FFG-style encoder the flow networks
        keep their identity initialization (q = the encoder's Gaussian)."""
        super().init_from_amortized(guide, x)
        if not isinstance(guide, FlowEncoder):
            return
        pairs = list(zip(self.flow_networks(), guide.flow_networks()))
        if self.activation != "elu":  # the amortized flow's networks are ELU networks
            raise ConfigError(f"{type(self).__name__} with activation={self.activation!r} cannot copy the ELU "
                              f"networks of {type(guide).__name__}")
        for mine, theirs in pairs:
            linears = [m for m in theirs if isinstance(m, nn.Linear)]
            if len(linears) != len(mine.layers) or any(
                    l.weight.shape[::-1] != b.weight.shape[1:] for l, b in zip(linears, mine.layers)):
                raise ConfigError(f"{type(self).__name__} cannot start from {type(guide).__name__}: the flow "
                                  "networks differ in size (use the same flow_hidden and num_steps)")
        for mine, theirs in pairs:
            for layer, lin in zip(mine.layers, (m for m in theirs if isinstance(m, nn.Linear))):
                layer.weight.copy_(lin.weight.T.expand_as(layer.weight))
                layer.bias.copy_(lin.bias.expand_as(layer.bias))

    def parts(self, x, idx=None) -> FlowParts:
        rows = self.rows(x, idx)
        d, nets = self.latent_dim, self.nets
        return FlowParts(self.loc[rows], self.scale[rows], head_gaussian(self.q_v, d, rows),
                         [(head_split(nets[i], d, rows), head_split(nets[i + 1], d, rows))
                          for i in range(0, len(nets), 2)],
                         head_gaussian(self.reverse, d, rows))

    def forward(self, x, idx=None, num_data=None):
        parts = self.parts(x, idx)
        with self.data_plate(x, idx, num_data):
            return parts.sample(self)

FAMILY = Family("flow", amortized=FlowEncoder, local=LocalFlow,
                description="auxiliary-variable Real-NVP flow of Cremer et al. 2018 (FFG base, 2 coupling steps)")
