r"""Mixture encoder ME(M): :math:`q(z\mid x) = \sum_{m=1}^M \alpha_m(x)\,\mathcal N(z;\mu_m(x), \mathrm{diag}\,\sigma_m^2(x))`.

``num_components`` :math:`M\in\{2,3,4,5\}` (any ``M >= 1`` works).

**Scoring** (contract (b)). The site ``"z"`` is a :class:`DiagNormalMixture`: a draw picks a
component :math:`k\sim\mathrm{Cat}(\alpha)` and returns :math:`\mu_k+\sigma_k\epsilon`, and its
``log_prob`` is the exact mixture density
:math:`\log q(z) = \mathrm{logsumexp}_m[\log\alpha_m + \log\mathcal N(z;\mu_m,\sigma_m^2)]` (all
constants kept). So the trace's log-density is :math:`\log q(z\mid x)` itself and importance weights
:math:`p(x,z)/q(z\mid x)`, :math:`z\sim q`, are unbiased for :math:`p(x)` — no estimator special case.
(This is the auxiliary-variable construction with the exact responsibilities as reverse model,
:math:`\log\alpha_k + \log q_k(z) - \log r(k\mid z) = \log q(z)`, with the cancellation done
analytically.)

**Training** (the :meth:`pyro_vaegap.contract.guide.Guide.elbo` hook, ``custom_elbo = True``). The draw is
pathwise only *given* the discrete component, so a plain ``Trace_ELBO`` would miss the gradient
through :math:`k` with respect to :math:`\alpha`. The guide instead trains the stratified
(component-wise) estimator of the mixture's own ELBO,

.. math::

    \mathcal L[q] = \sum_m \alpha_m(x)\,\mathbb E_{q_m}\big[\log p(x,z) - \log q(z\mid x)\big]
    \approx \sum_m \alpha_m(x)\,\frac1R\sum_{r=1}^R \big[\log p(x,z_{mr}) - \log q(z_{mr}\mid x)\big],
    \quad z_{mr} = \mu_m + \sigma_m\epsilon_{mr},

with :math:`R=\lceil S/M\rceil` draws per component: unbiased for :math:`\mathcal L[q]`, with exact
gradients for :math:`\alpha` (they multiply each stratum) and pathwise gradients for
:math:`\mu_m,\sigma_m`. Each stratum is computed by the ordinary trace plumbing
(:func:`~pyro_vaegap.estimators.traces.log_weights`) with the guide's draw forced to component ``m``.

* :class:`MixtureEncoder` — amortized: an MLP ``x → h → (μ_m, σ_m, logit α_m)_m``.
* :class:`LocalMixture` — per datum: free ``locs (N, M, d)``, ``scales (N, M, d)``, ``logits (N, M)``.
"""
from __future__ import annotations

import math
from contextlib import contextmanager

import pyro
import torch
from pyro.distributions import TorchDistribution
from pyro.nn import PyroParam
from torch import nn
from torch.distributions import constraints

from pyro_vaegap.contract.guide import Family, Guide, LocalGuide
from pyro_vaegap.models.networks import encoder_body
from pyro_vaegap.estimators.traces import log_weights
from pyro_vaegap.utils import check_positive_int
from ._batched import MIN_SCALE


class DiagNormalMixture(TorchDistribution):
    r"""Mixture of diagonal Normals with exact ``log_prob`` and a component-conditional draw.

    :param locs, scales: ``(*batch, M, d)``; ``logits``: ``(*batch, M)`` (unnormalized log weights).
    :param component: ``None`` to draw the component from :math:`\mathrm{Cat}(\mathrm{softmax}(logits))`,
        or an ``int`` to force it (the strata of :meth:`MixtureEncoder.elbo`).

    ``rsample`` is differentiable in ``locs`` and ``scales`` of the drawn component, not in
    ``logits`` (the draw is discrete); see the module docstring for how training handles that.
    """

    arg_constraints = {"locs": constraints.real, "scales": constraints.positive, "logits": constraints.real}
    support = constraints.real_vector
    has_rsample = True

    def __init__(self, locs, scales, logits, component: int | None = None, validate_args=None):
        self.locs, self.scales, self.logits, self.component = locs, scales, logits, component
        batch_shape = torch.broadcast_shapes(locs.shape[:-2], scales.shape[:-2], logits.shape[:-1])
        super().__init__(batch_shape, locs.shape[-1:], validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        batch_shape = torch.Size(batch_shape)
        M, d = self.locs.shape[-2:]
        return DiagNormalMixture(self.locs.expand(batch_shape + (M, d)), self.scales.expand(batch_shape + (M, d)),
                                 self.logits.expand(batch_shape + (M,)), self.component)

    def component_log_probs(self, value):
        """:math:`\\log\\alpha_m + \\log\\mathcal N(z;\\mu_m,\\sigma_m^2)`, shape ``(*value batch, M)``."""
        eps = (value.unsqueeze(-2) - self.locs) / self.scales
        log_n = -0.5 * eps.pow(2).sum(-1) - self.scales.log().sum(-1) - 0.5 * self.locs.shape[-1] * math.log(2 * math.pi)
        return torch.log_softmax(self.logits, -1) + log_n

    def log_prob(self, value):
        return torch.logsumexp(self.component_log_probs(value), -1)

    def rsample(self, sample_shape=torch.Size()):
        shape = torch.Size(sample_shape) + self.batch_shape
        if self.component is None:
            k = torch.distributions.Categorical(logits=self.logits).sample(sample_shape)
        else:
            k = torch.full(shape, self.component, dtype=torch.long, device=self.locs.device)
        index = k.reshape(shape + (1, 1)).expand(shape + (1, self.event_shape[0]))
        loc = self.locs.expand(shape + self.locs.shape[-2:]).gather(-2, index).squeeze(-2)
        scale = self.scales.expand(shape + self.scales.shape[-2:]).gather(-2, index).squeeze(-2)
        return loc + scale * torch.randn_like(loc)


class _Stratified:
    """Mixin: the stratified ELBO hook, for guides with ``mixture(x, idx)`` and ``num_components``."""

    custom_elbo = True
    stratified_elbo = True  #: the training objective is the stratified ELBO (objectives may reuse the strata)
    _component: int | None = None

    @contextmanager
    def stratum(self, m: int):
        """Force every draw of ``"z"`` to component ``m`` (for :meth:`elbo`)."""
        self._component = m
        try:
            yield
        finally:
            self._component = None

    def elbo(self, model, x, num_samples, idx=None):
        M = self.num_components
        R = max(1, math.ceil(num_samples / M))
        _, _, logits = self.mixture(x, idx)
        alpha = torch.softmax(logits, -1)  # (B, M)
        total = 0.0
        for m in range(M):
            with self.stratum(m):
                total = total + alpha[:, m] * log_weights(model, self, x, R, idx).mean(0)
        return total

    def sample_z(self, x, idx, num_data, locs, scales, logits):
        with self.data_plate(x, idx, num_data):
            return self.sample_latents(DiagNormalMixture(locs, scales, logits, self._component))


class MixtureEncoder(_Stratified, Guide):
    """Amortized ME(M); ``hidden``, ``layers``, ``activation``, ``dense``, ``arch`` as for ``ffg``.

    :meth:`mixture` returns ``(locs (B, M, d), scales (B, M, d), logits (B, M))``.
    """

    def __init__(self, model, num_components: int = 2, hidden: int = 200, layers: int = 2,
                 activation: str = "elu", dense: bool = False, arch: str = "mlp"):
        super().__init__(model)
        self.num_components = M = check_positive_int("num_components", num_components)
        self.body, width = encoder_body(self.data_dim, hidden, layers, activation, dense, arch)
        self.head = nn.Linear(width, M * (2 * self.latent_dim + 1))

    def mixture(self, x, idx=None):
        M, d = self.num_components, self.latent_dim
        out = self.head(self.body(x))
        locs, raw, logits = out.split([M * d, M * d, M], dim=-1)
        shape = x.shape[:-1] + (M, d)
        return locs.reshape(shape), (nn.functional.softplus(raw) + MIN_SCALE).reshape(shape), logits

    def forward(self, x, idx=None, num_data=None):
        return self.sample_z(x, idx, num_data, *self.mixture(x))


class LocalMixture(_Stratified, LocalGuide):
    """Per-datum ME(M): ``locs``, ``scales`` ``(N, M, d)`` and ``logits`` ``(N, M)``.

    Starts at equal weights and unit scales with component means drawn from
    :math:`\\mathcal N(0, \\text{init_spread}^2)`: identical components would receive identical
    expected gradients and never separate.
    """

    def __init__(self, model, num_data: int, num_components: int = 2, init_spread: float = 0.5,
                 init_scale: float = 1.0):
        super().__init__(model, num_data)
        self.num_components = M = check_positive_int("num_components", num_components)
        d = self.latent_dim
        self.locs = PyroParam(float(init_spread) * torch.randn(num_data, M, d))
        self.scales = PyroParam(torch.full((num_data, M, d), float(init_scale)), constraint=constraints.positive)
        self.logits = PyroParam(torch.zeros(num_data, M))

    def mixture(self, x, idx=None):
        rows = self.rows(x, idx)
        return self.locs[rows], self.scales[rows], self.logits[rows]

    def forward(self, x, idx=None, num_data=None):
        return self.sample_z(x, idx, num_data, *self.mixture(x, idx))

    @torch.no_grad()
    def init_from_amortized(self, guide, x):
        """Start from a mixture encoder with the same number of components."""
        if getattr(guide, "num_components", None) != self.num_components:
            super().init_from_amortized(guide, x)
        locs, scales, logits = guide.mixture(x)
        self.locs, self.scales, self.logits = locs.clone(), scales.clone(), logits.clone()


FAMILY = Family("mixture", amortized=MixtureEncoder, local=LocalMixture,
                description="mixture of M FFG components (ME(M)), trained with the stratified ELBO")
