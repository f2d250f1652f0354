r"""The Σ-VAE of R. Yu's tutorial (2020, §3.3) built on a normalizing flow, and its ELBO's limit.

Given an invertible map :math:`f: \mathbb R^n \to \mathbb R^n` with Jacobian :math:`J(z)` (a flow
``x = f(z)``, :math:`z\sim\mathcal N(0, I)`, here any :class:`pyro.distributions.transforms.Transform`),
the Σ-VAE with parameter :math:`\epsilon > 0` is

.. math::

    p(z) = \mathcal N(0, I),\quad p_\epsilon(x\mid z) = \mathcal N(f(z), \epsilon^2 I),\qquad
    q_\epsilon(z\mid x) = \mathcal N\big(f^{-1}(x),\ \epsilon^2 J^{-1}J^{-\top}\big),\ J = J(f^{-1}(x))

(:class:`SigmaVAE`, :class:`SigmaVAEGuide`). The tutorial shows (eqs. 18–32) that its negative ELBO
tends to the flow's exact negative log-likelihood (change of variables, eq. 18)

.. math::

    -\log p_f(x) = -\log\mathcal N(f^{-1}(x); 0, I) - \log|\det J^{-1}|

as :math:`\epsilon\to 0`. **Order of convergence** (derived here from eqs. 24–30; the tutorial
states the limit only). With :math:`z = f^{-1}(x) + \epsilon J^{-1}u`, :math:`u\sim\mathcal N(0,I)`,
eq. 30 gives exactly

.. math::

    -\mathcal L_\epsilon(x) + \log p_f(x)
    = \tfrac12\big(\mathbb E\lVert u + r\rVert^2 - n\big) + \tfrac12\epsilon^2\,\mathrm{tr}(J^{-1}J^{-\top}),
    \qquad r = \frac{f(f^{-1}(x) + \epsilon J^{-1}u) - x}{\epsilon} - u .

For an **affine** :math:`f` the remainder :math:`r` is 0 and the gap is
:math:`\tfrac12\epsilon^2\,\mathrm{tr}(J^{-1}J^{-\top})` exactly (:func:`affine_gap`). For a smooth
:math:`f`, Taylor's theorem gives :math:`r = \tfrac\epsilon2 H[v,v] + O(\epsilon^2)` with
:math:`v = J^{-1}u`, so :math:`\mathbb E\lVert u+r\rVert^2 - n = O(\epsilon^2)` (the
:math:`O(\epsilon)` term :math:`\mathbb E[u^\top H[v,v]]` is an odd moment of :math:`u` and vanishes);
moreover the ELBO is even in :math:`\epsilon` (:math:`(\epsilon, u)\to(-\epsilon,-u)` leaves
:math:`z` unchanged), so

.. math::

    -\mathcal L_\epsilon(x) - \big(-\log p_f(x)\big) = c(x)\,\epsilon^2 + O(\epsilon^4):

**second order**, a slope of 2 on a log-log plot. (The Monte Carlo ELBO's standard deviation falls only
as :math:`O(\epsilon)`: the :math:`\lVert u\rVert^2` terms of :math:`\log p(x\mid z)` and
:math:`\log q(z\mid x)` cancel, and what is left is :math:`\log p(z)`'s first-order fluctuation; so
very small :math:`\epsilon` need many samples.)

The ELBO is computed by the project's estimators from the Pyro model and guide
(:func:`pyro_vaegap.estimators.importance.importance_sample` traces them); the flow's NLL by Pyro's
:class:`~pyro.distributions.TransformedDistribution` (:func:`flow_log_prob`) — two independent
computations.
"""
from __future__ import annotations

import math

import numpy as np
import pyro
import pyro.distributions as dist
import pyro.distributions.transforms as T
import torch

from ..data import validate_continuous
from ..estimators.importance import importance_sample
from ..contract.guide import Guide
from ..models.base import VAEModel, data_plate
from ..utils import ConfigError, check_positive_int


def _check_eps(eps) -> float:
    eps = float(eps)
    if not (math.isfinite(eps) and eps > 0):
        raise ConfigError(f"eps={eps!r} is not allowed: expected a finite positive number")
    return eps


def base_distribution(n: int, like: torch.Tensor | None = None) -> dist.Distribution:
    """:math:`\\mathcal N(0, I_n)` as one event (the flow's base and the Σ-VAE's prior)."""
    zeros = torch.zeros(n) if like is None else like.new_zeros(n)
    return dist.Normal(zeros, torch.ones_like(zeros)).to_event(1)


def flow_log_prob(transform: T.Transform, x: torch.Tensor) -> torch.Tensor:
    r""":math:`\log p_f(x)` per row of ``x`` by change of variables (eq. 18), through Pyro's
    :class:`~pyro.distributions.TransformedDistribution`: shape ``(N,)``."""
    return dist.TransformedDistribution(base_distribution(x.shape[-1], x), [transform]).log_prob(x)


def jacobian(transform: T.Transform, z: torch.Tensor) -> torch.Tensor:
    r""":math:`J(z)_{ij} = \partial f_i/\partial z_j` for every row of ``z`` ``(B, n)``: shape ``(B, n, n)``.

    By reverse-mode autodiff, one backward pass per output dimension (rows of ``z`` do not interact in a
    flow, so the gradient of the batch sum of :math:`f_i` is row ``b``'s :math:`\nabla f_i`); works with
    gradients disabled around it (estimators run under ``no_grad``)."""
    with torch.enable_grad():
        z = z.detach().requires_grad_(True)
        y = transform(z)
        rows = [torch.autograd.grad(y[..., i].sum(), z, retain_graph=i < z.shape[-1] - 1)[0]
                for i in range(z.shape[-1])]
    return torch.stack(rows, dim=-2).detach()


class SigmaVAE(VAEModel):
    r"""The Σ-VAE's model: :math:`z\sim\mathcal N(0,I)`, :math:`x\mid z\sim\mathcal N(f(z), \epsilon^2 I)`.

    :param transform: the invertible map :math:`f` (latent → data), a Pyro/torch ``Transform`` on
        vectors of size ``dim`` (its module parameters, if any, are registered here).
    :param dim: :math:`n` (latent and data dimension: :math:`f` is invertible).
    :param eps: :math:`\epsilon`, the decoder's standard deviation.
    """

    def __init__(self, transform: T.Transform, dim: int, eps: float):
        n = check_positive_int("dim", dim)
        super().__init__(n, n)
        self.transform = transform
        self.eps = _check_eps(eps)

    def likelihood(self, z):
        loc = self.transform(z)
        return dist.Normal(loc, torch.full_like(loc, self.eps), validate_args=False).to_event(1)

    def validate_data(self, x):
        x = validate_continuous(x)
        self._check_width(x)
        return x


class SigmaVAEGuide(Guide):
    r"""The Σ-VAE's encoder: :math:`q(z\mid x) = \mathcal N(f^{-1}(x), \epsilon^2 J^{-1}J^{-\top})` (eq. 19),
    :math:`J` the Jacobian of :math:`f` at :math:`f^{-1}(x)` (:func:`jacobian`), read off the model's
    ``transform`` and ``eps``. Full covariance: a :class:`~pyro.distributions.MultivariateNormal` whose
    scale is :math:`\epsilon` times the Cholesky factor of :math:`J^{-1}J^{-\top}`."""

    def __init__(self, model: SigmaVAE):
        super().__init__(model)
        self.model_ref = [model]  # a list: not a submodule (the model's parameters are not the guide's)

    def encode(self, x):
        """``(loc, scale_tril)`` of :math:`q(z\\mid x)`, shapes ``(B, n)`` and ``(B, n, n)``."""
        model = self.model_ref[0]
        loc = model.transform.inv(x)
        J = jacobian(model.transform, loc)
        J_inv = torch.linalg.inv(J)
        scale_tril = model.eps * torch.linalg.cholesky(J_inv @ J_inv.transpose(-1, -2))
        return loc.detach(), scale_tril

    def forward(self, x, idx=None, num_data=None):
        loc, scale_tril = self.encode(x)
        with data_plate(x, idx, num_data):
            return pyro.sample("z", dist.MultivariateNormal(loc, scale_tril=scale_tril))


def affine_flow(n: int, seed: int = 0, dtype=torch.float64) -> T.LowerCholeskyAffine:
    r"""A seeded affine flow :math:`f(z) = b + Lz` (Pyro's ``LowerCholeskyAffine``), :math:`L` lower
    triangular with positive diagonal and off-diagonal entries, so :math:`J^{-1}J^{-\top}` is not diagonal."""
    g = torch.Generator().manual_seed(seed)
    L = torch.tril(0.5 * torch.randn(n, n, generator=g, dtype=dtype), -1)
    L = L + torch.diag(torch.exp(0.5 * torch.randn(n, generator=g, dtype=dtype)))
    b = torch.randn(n, generator=g, dtype=dtype)
    return T.LowerCholeskyAffine(b, L)


def affine_gap(transform: T.LowerCholeskyAffine, eps: float) -> float:
    r"""The exact gap :math:`-\mathcal L_\epsilon - (-\log p_f) = \tfrac12\epsilon^2\mathrm{tr}(L^{-1}L^{-\top})`
    of an affine flow (the same for every ``x``)."""
    L_inv = torch.linalg.inv(transform.scale_tril)
    return 0.5 * eps ** 2 * float((L_inv ** 2).sum())


def real_nvp(n: int = 2, couplings: int = 4, hidden: int = 32, seed: int = 0,
             dtype=torch.float64) -> T.ComposeTransformModule:
    """A small Real NVP (Dinh et al. 2017): ``couplings`` affine couplings
    (:func:`pyro.distributions.transforms.affine_coupling`) with the coordinates reversed between them."""
    check_positive_int("couplings", couplings)
    torch.manual_seed(seed)
    parts = []
    for i in range(couplings):
        if i:
            parts.append(T.Permute(torch.arange(n - 1, -1, -1)))
        parts.append(T.affine_coupling(n, hidden_dims=[hidden, hidden]))
    return T.ComposeTransformModule(parts).to(dtype)


def train_flow(transform: T.ComposeTransformModule, x: torch.Tensor, steps: int = 2000, batch_size: int = 256,
               lr: float = 3e-3, seed: int = 0) -> list[float]:
    """Maximum likelihood for ``transform`` on ``x`` (Adam on minibatches of :func:`flow_log_prob`, cosine
    learning-rate decay); returns the per-step mean NLL (nats)."""
    check_positive_int("steps", steps)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(transform.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    losses = []
    for _ in range(steps):
        xb = x[torch.randint(0, x.shape[0], (batch_size,), generator=gen)]
        loss = -flow_log_prob(transform, xb).mean()
        if not torch.isfinite(loss):
            raise FloatingPointError("non-finite flow NLL during training; lower lr")
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
    return losses


@torch.no_grad()
def flow_limit_gaps(transform: T.Transform, x: torch.Tensor, eps_values, num_samples: int = 2000,
                    data_chunk: int = 250, sample_chunk: int = 500) -> dict:
    r"""For each :math:`\epsilon`: the mean over the rows of ``x`` of
    :math:`-\mathcal L_\epsilon(x) - (-\log p_f(x))`, with its Monte Carlo standard error.

    The ELBO is ``importance_sample``'s ``num_samples``-draw mean of the log-weights of
    :class:`SigmaVAE` / :class:`SigmaVAEGuide`; the standard error is the Monte Carlo error of the mean
    over these fixed datapoints, :math:`\sqrt{\sum_n \mathrm{se}_n^2}/N` (the spread of the gap across
    datapoints is not noise: every :math:`\epsilon` sees the same points).

    :returns: ``{"eps", "gap", "gap_se", "neg_elbo", "nll_flow"}`` — lists over ``eps_values`` (nats
        per datapoint), ``nll_flow`` a float.
    """
    n = x.shape[-1]
    nll_flow = -flow_log_prob(transform, x)
    out = {"eps": [], "gap": [], "gap_se": [], "neg_elbo": [], "nll_flow": float(nll_flow.mean())}
    for eps in eps_values:
        model = SigmaVAE(transform, n, eps)
        r = importance_sample(model, SigmaVAEGuide(model), x, num_samples, psis=False,
                              data_chunk=data_chunk, sample_chunk=sample_chunk)
        gap = -r.elbo - nll_flow
        out["eps"].append(float(eps))
        out["gap"].append(float(gap.mean()))
        out["gap_se"].append(float(r.elbo_se.pow(2).sum().sqrt() / x.shape[0]))
        out["neg_elbo"].append(float(-r.elbo.mean()))
    return out


def fit_order(eps, gap, gap_se) -> tuple[float, float, float]:
    r"""Weighted least-squares fit of :math:`\log g = \log c + p\log\epsilon`: ``(p, se of p, c)``.

    Weights: the inverse variance of :math:`\log g` by the delta method, :math:`(g/\mathrm{se})^2`;
    the slope's standard error is :math:`\sqrt{[(X^\top W X)^{-1}]_{pp}}`. Every gap must be positive."""
    eps, gap, se = (np.asarray(v, dtype=float) for v in (eps, gap, gap_se))
    if len(eps) < 2 or (gap <= 0).any() or (se <= 0).any():
        raise ConfigError("fit_order needs at least two positive gaps with positive standard errors")
    X = np.stack([np.ones_like(eps), np.log(eps)], 1)
    W = (gap / se) ** 2
    cov = np.linalg.inv(X.T @ (X * W[:, None]))
    coef = cov @ (X.T @ (W * np.log(gap)))
    return float(coef[1]), float(math.sqrt(cov[1, 1])), float(math.exp(coef[0]))
