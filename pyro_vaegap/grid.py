r"""Exact answers for a model with a 2-d latent: the posterior and :math:`\log p(x)` by quadrature on a grid.

With :math:`d = 2` the posterior :math:`p(z\mid x)\propto p(x, z)` can be tabulated on a square grid
:math:`z_g\in[-\ell,\ell]^2` of :math:`n\times n` points with spacing :math:`h = 2\ell/(n-1)`:

.. math::

    \log p(x) \approx \log\Big(h^2\sum_g p(x, z_g)\Big)
    = \mathrm{logsumexp}_g\,\log p(x, z_g) + 2\log h,

and the posterior mean and covariance are the same weighted sums of :math:`z_g` and
:math:`z_gz_g^\top`. For a smooth posterior well inside the square the error of this sum falls
faster than any power of :math:`h/\sigma` (:math:`\sigma` the posterior's smallest scale; for a
Gaussian it is of order :math:`e^{-2\pi^2\sigma^2/h^2}`), so :math:`h\le\sigma/2` is exact to far below
1e-3 nats. :class:`GridPosterior` reports what is needed to check that: the smallest posterior
standard deviation per point and the posterior mass in the outer tenth of the square (which must be
negligible), and :func:`grid_posterior` can be rerun at half the resolution to compare.

The joint is read from the model, never re-implemented: :math:`\log p(z)` from ``model.prior``, and
:math:`\log p(x\mid z)` from the traced model (:func:`pyro_vaegap.traces.log_joint_parts`) or, when
the model has one, from ``model.pairwise_log_likelihood(z, x)`` (``(G, N)``, the decoder run once per
grid point and every datapoint scored against it; :meth:`pyro_vaegap.models.BernoulliVAE.pairwise_log_likelihood`),
which makes a million-point grid for hundreds of MNIST digits a matter of a minute on one core. The
grid is streamed in chunks with running log-sum-exp and moments, so memory stays bounded.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .traces import log_joint_parts
from .utils import ConfigError, check_positive_int


@dataclass
class GridPosterior:
    """The result of :func:`grid_posterior` for ``N`` datapoints (float64 tensors)."""

    log_px: torch.Tensor      #: ``(N,)`` :math:`\log p(x)` by quadrature
    mean: torch.Tensor        #: ``(N, 2)`` posterior mean
    cov: torch.Tensor         #: ``(N, 2, 2)`` posterior covariance
    edge_mass: torch.Tensor   #: ``(N,)`` posterior mass where :math:`\max_i|z_i| > 0.9\,\ell` (should be ≈ 0)
    axis: torch.Tensor        #: ``(n,)`` the grid's coordinates along each axis
    log_joint: dict           #: row ``k`` of ``keep`` → ``(n, n)`` :math:`\log p(x_k, z)`, ``[i, j]`` at ``(axis[i], axis[j])``

    @property
    def spacing(self) -> float:
        return float(self.axis[1] - self.axis[0])

    @property
    def min_std(self) -> torch.Tensor:
        """``(N,)`` the smallest posterior standard deviation (square root of the covariance's smaller eigenvalue)."""
        return torch.linalg.eigvalsh(self.cov)[:, 0].clamp_min(0).sqrt()


def latent_grid(lim: float, n: int, dtype=torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
    """``(axis, points)``: ``n`` equally spaced values on ``[-lim, lim]`` and the ``n²`` grid points ``(n², 2)``,
    row-major (``points[i * n + j] = (axis[i], axis[j])``)."""
    if not (isinstance(lim, (int, float)) and math.isfinite(lim) and lim > 0):
        raise ConfigError(f"lim={lim!r} is not allowed: expected a finite positive number")
    check_positive_int("n", n, minimum=3)
    axis = torch.linspace(-lim, lim, n, dtype=dtype)
    return axis, torch.cartesian_prod(axis, axis)


def _log_likelihood(model, z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """:math:`\\log p(x_n\\mid z_g)`, shape ``(G, N)``."""
    pairwise = getattr(model, "pairwise_log_likelihood", None)
    if pairwise is not None:
        return pairwise(z, x)
    _, log_lik = log_joint_parts(model, x, {"z": z[:, None, :].expand(-1, x.shape[0], -1)})
    return log_lik


@torch.no_grad()
def grid_posterior(model, x: torch.Tensor, lim: float = 7.0, n: int = 601, *, chunk: int = 40_000,
                   keep=()) -> GridPosterior:
    """Tabulate :math:`\\log p(x_k, z)` of a model with one 2-d latent site ``"z"`` on the ``n × n`` grid over
    ``[-lim, lim]²`` for the rows ``x_k`` of ``x``: :math:`\\log p(x)`, posterior moments, the mass near the
    grid's edge, and the whole table for the rows listed in ``keep`` (for figures).

    The grid is float64; the model is evaluated in the dtype of ``x`` and the sums are kept in float64.
    ``chunk``: grid points per model call (memory ~ ``chunk × (N + D)`` numbers).
    """
    if getattr(model, "latent_dim", 2) != 2:
        raise ConfigError(f"grid integration needs a 2-d latent; the model has latent_dim={model.latent_dim}")
    check_positive_int("chunk", chunk)
    keep = [int(k) for k in keep]
    N = x.shape[0]
    axis, points = latent_grid(lim, n)
    m = torch.full((N,), -math.inf, dtype=torch.float64)
    s0, s1 = torch.zeros(N, dtype=torch.float64), torch.zeros(N, 2, dtype=torch.float64)
    s2, edge = torch.zeros(N, 2, 2, dtype=torch.float64), torch.zeros(N, dtype=torch.float64)
    kept = {k: [] for k in keep}
    for z in points.split(chunk):
        zm = z.to(x.dtype)
        lj = (model.prior(zm).log_prob(zm)[:, None] + _log_likelihood(model, zm, x)).double()  # (G, N)
        for k in keep:
            kept[k].append(lj[:, k].clone())
        m_new = torch.maximum(m, lj.max(0).values)
        rescale = torch.exp(m - m_new).nan_to_num(0.0)  # exp(-inf) where nothing was seen yet
        w = torch.exp(lj - m_new)
        outer = z.abs().amax(-1) > 0.9 * lim
        s0 = s0 * rescale + w.sum(0)
        s1 = s1 * rescale[:, None] + w.T @ z
        s2 = s2 * rescale[:, None, None] + torch.einsum("gn,gi,gj->nij", w, z, z)
        edge = edge * rescale + w[outer].sum(0)
        m = m_new
    log_h2 = 2 * math.log(float(axis[1] - axis[0]))
    mean = s1 / s0[:, None]
    cov = s2 / s0[:, None, None] - mean[:, :, None] * mean[:, None, :]
    return GridPosterior(log_px=m + s0.log() + log_h2, mean=mean, cov=cov, edge_mass=edge / s0, axis=axis,
                         log_joint={k: torch.cat(v).reshape(n, n) for k, v in kept.items()})


def grid_log_px(model, x: torch.Tensor, lim: float = 7.0, n: int = 601) -> torch.Tensor:
    """:math:`\\log p(x)` of a model with a 2-d latent site ``"z"`` by quadrature of :math:`p(x, z)` over
    ``[-lim, lim]²`` (:func:`grid_posterior`), shape ``(N,)``, float64. With ``n = 601`` (spacing 0.023) and
    posteriors of scale ≳ 0.1 well inside the grid, the quadrature error is far below 1e-3 nats."""
    return grid_posterior(model, x, lim, n).log_px
