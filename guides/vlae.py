r"""VLAE: the variational Laplace autoencoder of Park, Kim & Kim (2019), the baseline of Kim & Pavlovic's supplement 11.

For a Gaussian decoder :math:`p(x\mid z) = \mathcal N(g(z), \mathrm{diag}\,\sigma^2)` with :math:`\sigma` not
depending on :math:`z`, and :math:`p(z) = \mathcal N(0, I)`, linearizing the decoder at a point :math:`z_0`,
:math:`g(z)\approx g(z_0) + J(z - z_0)` with the Jacobian :math:`J = \partial g/\partial z\,(z_0)`, makes the
log-joint quadratic in :math:`z`: the linearized posterior is Gaussian with

.. math::

    \Lambda = I + J^\top\mathrm{diag}(\sigma^{-2})\,J, \qquad
    \mu = \Lambda^{-1}J^\top\mathrm{diag}(\sigma^{-2})\,\big(x - g(z_0) + Jz_0\big),

its mode :math:`\mu` and its precision :math:`\Lambda` the (Gauss–Newton) Hessian of
:math:`-\log p(x, z)` at that mode under the linearization. Starting at the encoder's mean :math:`z_0 = b(x)`
(an FFG encoder, as ``ffg``), ``num_steps`` :math:`T` iterations :math:`z_{t+1} = \mu(z_t)` move toward the
posterior mode (each is a Gauss–Newton step on :math:`\log p(x, z)`), and

.. math::

    q(z\mid x) = \mathcal N\big(\mu(z_{T-1}),\ \Lambda(z_{T-1})^{-1}\big),

a full-covariance Gaussian: the mode and the Hessian of the last linearization (Park et al.'s Algorithm 1). For a
decoder that is linear in :math:`z` the linearization is exact, so one step gives the exact posterior, whatever the
encoder's output (``tests/test_vlae.py`` checks this against
:meth:`~pyro_vaegap.models.LinearGaussian.exact_posterior`).

The decoder's mean and scale are read off a trace of the model conditioned on :math:`z` (its one observed site,
whose distribution must be a Normal, possibly wrapped in ``Independent``), never from a second copy of the model;
:math:`J` is one forward-mode pass over :math:`d` copies of the batch (``torch.func.jvp``), differentiable, so
training back-propagates through the :math:`T` steps into encoder and decoder (as SA(K) does). Park et al. and
Kim & Pavlovic apply VLAE to fully connected decoders only (the Jacobian's cost), and so does this family: a model
with a convolution is refused, as is a non-Gaussian likelihood or one whose variance depends on :math:`z`.

The per-datum counterpart is the per-datum full-covariance Gaussian (``fullcov``'s :class:`LocalFullCov`), the
optimum of the family VLAE's :math:`q` lies in.
"""
from __future__ import annotations

import pyro.distributions as dist
import torch
from pyro import poutine
from torch import nn

from pyro_vaegap.contract.guide import Family, Guide
from pyro_vaegap.contract.model import call
from pyro_vaegap.utils import ConfigError, check_positive_int
from .ffg import FFGEncoder
from .fullcov import LocalFullCov


def _base_of(fn):
    """An observed site's distribution without its ``Independent`` wrappers."""
    while isinstance(fn, (dist.Independent, torch.distributions.Independent)):
        fn = fn.base_dist
    return fn


class VLAEEncoder(Guide):
    r"""Amortized VLAE: ``num_steps`` decoder linearizations from an FFG encoder's mean, then
    :math:`\mathcal N(\mu, \Lambda^{-1})`.

    :param num_steps: :math:`T \ge 1`, the number of linearization steps (Kim & Pavlovic's supplement: 1, 2, 4, 8).
    :param hidden, layers, activation, dense, arch: the encoder giving :math:`z_0` (as ``ffg``).

    :meth:`encode` returns ``(loc (B, d), scale_tril (B, d, d))``, :meth:`linearize` one step.
    """

    def __init__(self, model, num_steps: int = 1, hidden: int = 200, layers: int = 2, activation: str = "elu",
                 dense: bool = False, arch: str = "mlp"):
        super().__init__(model)
        self.num_steps = check_positive_int("num_steps", num_steps)
        convs = [type(m).__name__ for m in model.modules() if isinstance(m, nn.modules.conv._ConvNd)]
        if convs:
            raise ConfigError(f"the vlae family needs a fully connected decoder; this model has {convs[0]} layers "
                              "(train it with arch='mlp')")
        if len(self.spec.observed) != 1 or len(self.spec.latents) != 1 or not self.spec.latents[0].real:
            raise ConfigError("the vlae family needs a model with one observed site and one real-valued latent site")
        self.encoder = FFGEncoder(model, hidden, layers, activation, dense, arch)
        self._model = (model,)  # a plain reference, not a submodule: its parameters are the model's, not the guide's
        like = next(iter(model.parameters()), torch.zeros(()))
        with torch.no_grad():  # a model VLAE cannot linearize is refused now, not at its first batch
            self.decoder_moments(like.new_zeros(1, self.data_dim), like.new_zeros(1, self.latent_dim))

    def decoder_moments(self, x: torch.Tensor, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(g(z), σ)`` of the model's Gaussian likelihood at the rows of ``z`` ``(B, d)`` for data ``x``
        ``(B, D)``, read off a blocked trace of the model conditioned on ``z``: each ``(B, D)``."""
        site_z, site_x = self.spec.latents[0].name, self.spec.observed[0]
        with poutine.block():
            tr = poutine.trace(poutine.condition(call, data={site_z: z})).get_trace(self._model[0], x)
        normal = _base_of(tr.nodes[site_x]["fn"])
        if not isinstance(normal, (dist.Normal, torch.distributions.Normal)):
            raise ConfigError(f"the vlae family needs a Gaussian likelihood; the model's site {site_x!r} is "
                              f"{type(normal).__name__}")
        return normal.loc.expand(x.shape), normal.scale.expand(x.shape)

    def linearize(self, x: torch.Tensor, z0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        r"""One step: ``(μ (B, d), Λ (B, d, d))`` of the posterior under the decoder linearized at ``z0``."""
        B, d = z0.shape
        eye = torch.eye(d, dtype=z0.dtype, device=z0.device)
        copies = z0.unsqueeze(0).expand(d, B, d).reshape(d * B, d)
        tangents = eye.unsqueeze(1).expand(d, B, d).reshape(d * B, d)  # copy k moves along z_k
        xs = x.unsqueeze(0).expand(d, *x.shape).reshape(d * B, *x.shape[1:])
        (loc, scale), (dloc, dscale) = torch.func.jvp(lambda z: self.decoder_moments(xs, z), (copies,), (tangents,))
        if bool((dscale != 0).any()):
            raise ConfigError("the vlae family needs a decoder variance that does not depend on z (e.g. "
                              "variance='fixed', 'scalar' or 'diagonal', not 'network')")
        g0, var = loc[:B], scale[:B].square()
        J = dloc.reshape(d, B, -1).permute(1, 2, 0)                     # (B, D, d): ∂g/∂z at z0
        Jw = J / var.unsqueeze(-1)
        precision = eye + J.transpose(-1, -2) @ Jw                       # I + Jᵀ diag(σ⁻²) J
        rhs = (Jw.transpose(-1, -2) @ (x - g0 + (J @ z0.unsqueeze(-1)).squeeze(-1)).unsqueeze(-1))
        chol = torch.linalg.cholesky(precision)
        return torch.cholesky_solve(rhs, chol).squeeze(-1), precision

    def encode(self, x):
        z = self.encoder.encode(x)[0]
        for _ in range(self.num_steps):
            z, precision = self.linearize(x, z)
        scale_tril = dist.MultivariateNormal(z, precision_matrix=precision).scale_tril
        return z, scale_tril

    def distribution(self, x) -> dist.MultivariateNormal:
        r""":math:`q(z\mid x)` of every row of ``x``: batch ``(B,)``, event ``(d,)``."""
        loc, scale_tril = self.encode(x)
        return dist.MultivariateNormal(loc, scale_tril=scale_tril)

    def forward(self, x, idx=None, num_data=None):
        q = self.distribution(x)
        with self.data_plate(x, idx, num_data):
            return self.sample_latents(q)


FAMILY = Family("vlae", amortized=VLAEEncoder, local=LocalFullCov,
                description="VLAE (Park et al. 2019): FFG encoder, num_steps decoder linearizations to the posterior "
                            "mode, full covariance from the Hessian there; Gaussian fully connected decoders")
