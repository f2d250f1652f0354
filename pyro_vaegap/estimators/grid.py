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
:math:`\log p(x\mid z)` from the traced model (:func:`pyro_vaegap.estimators.traces.log_joint_parts`) or, when
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
from ..utils import ConfigError, check_positive_int


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


def latent_grid(lim: float, n: int, dtype=torch.float64, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(axis, points)``: ``n`` equally spaced values on ``[-lim, lim]`` and the ``n²`` grid points ``(n², 2)``,
    row-major (``points[i * n + j] = (axis[i], axis[j])``)."""
    if not (isinstance(lim, (int, float)) and math.isfinite(lim) and lim > 0):
        raise ConfigError(f"lim={lim!r} is not allowed: expected a finite positive number")
    check_positive_int("n", n, minimum=3)
    axis = torch.linspace(-lim, lim, n, dtype=dtype, device=device)
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
    axis, points = latent_grid(lim, n, device=x.device)
    f64 = dict(dtype=torch.float64, device=x.device)
    m = torch.full((N,), -math.inf, **f64)
    s0, s1, s2, edge = torch.zeros(N, **f64), torch.zeros(N, 2, **f64), torch.zeros(N, 2, 2, **f64), torch.zeros(N, **f64)
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


# Tables of the joint on windows of the plane and adaptive refinement (the InfoVAE figures):
# the joint is traced from the model, each grid point scored against all datapoints.
def grid_axis(lim: float = 7.0, n: int = 601, dtype=torch.float64) -> torch.Tensor:
    """The ``n`` nodes of one axis of the grid over :math:`[-\\mathrm{lim}, \\mathrm{lim}]^2`."""
    check_positive_int("n", n, minimum=2)
    if not (isinstance(lim, (int, float)) and math.isfinite(lim) and lim > 0):
        raise ValueError(f"lim={lim!r} must be a finite positive number")
    return torch.linspace(-lim, lim, n, dtype=dtype)


@torch.no_grad()
def grid_log_joint(model, x: torch.Tensor, lim: float = 7.0, n: int = 601, site: str = "z",
                   max_elements: int = 2 ** 25, center=None) -> tuple[torch.Tensor, torch.Tensor]:
    r""":math:`\log p(x, z)` of a model with one 2-d latent site on the ``n × n`` grid over the square of
    half-width ``lim`` around ``center`` (default the origin): ``(axes (2, n), log_joint (n*n, N))``, grid
    point ``i*n + j`` being :math:`z = (\mathrm{axes}_{0,i}, \mathrm{axes}_{1,j})`
    (``torch.cartesian_prod(axes[0], axes[1])``).

    The joint is traced from the model (:func:`pyro_vaegap.estimators.traces.log_joint_parts`), not re-implemented:
    each grid point is given as one ``(1, d)`` row that the model's likelihood broadcasts against the
    ``N`` datapoints, so the decoder runs once per grid point, not once per point and datapoint. The
    grid is cut into chunks of at most ``max_elements`` likelihood entries (grid points × N × D).
    The grid's dtype is the model's parameters' (float32 for the trained models)."""
    if x.dim() != 2:
        raise ValueError(f"x must be (N, D), got shape {tuple(x.shape)}")
    if getattr(model, "latent_dim", 2) != 2:
        raise ValueError(f"grid integration needs a 2-d latent; the model's latent_dim is {model.latent_dim}")
    param = next(iter(model.parameters()), None)
    dtype = param.dtype if param is not None else x.dtype
    axis = grid_axis(lim, n, dtype=dtype).to(x.device)
    c = torch.zeros(2, dtype=dtype, device=x.device) if center is None else \
        torch.as_tensor(center, dtype=dtype, device=x.device).reshape(2)
    axes = torch.stack([axis + c[0], axis + c[1]])
    zz = torch.cartesian_prod(axes[0], axes[1])
    chunk = max(1, max_elements // (x.shape[0] * x.shape[1]))
    out = []
    for z in zz.split(chunk):
        lp, ll = log_joint_parts(model, x, {site: z[:, None, :]})
        out.append(lp + ll)
    return axes, torch.cat(out)


@torch.no_grad()
def grid_log_posterior(model, x: torch.Tensor, lim: float = 7.0, n: int = 601,
                       **kwargs) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    r"""The true posterior of a 2-d latent on the grid: ``(axes (2, n), log_density (N, n, n), log_px (N,))``,
    :math:`\log p(z\mid x) = \log p(x, z) - \log p(x)` at each grid point (``[:, i, j]`` is
    :math:`z = (\mathrm{axes}_{0,i}, \mathrm{axes}_{1,j})`), normalized by the quadrature :math:`\log p(x)`
    of :func:`grid_log_px`; ``kwargs`` as for :func:`grid_log_joint` (e.g. ``center``)."""
    axes, lj = grid_log_joint(model, x, lim, n, **kwargs)
    log_px = torch.logsumexp(lj, 0) + 2 * math.log(float(axes[0, 1] - axes[0, 0]))
    return axes, (lj - log_px).T.reshape(x.shape[0], n, n), log_px


@torch.no_grad()
def _log_joint_at(model, x1: torch.Tensor, z: torch.Tensor, site: str, max_elements: int) -> torch.Tensor:
    """:math:`\\log p(x, z)` of one datapoint ``x1`` ``(1, D)`` at the rows of ``z`` ``(K, 2)``, shape ``(K,)``."""
    chunk = max(1, max_elements // x1.shape[1])
    return torch.cat([sum(log_joint_parts(model, x1, {site: zc[:, None, :]}))[:, 0] for zc in z.split(chunk)])


def _neighbour_spread(idx: torch.Tensor, vals: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    r""":math:`\delta_c = \max_{c'}|v_{c'} - v_c|` over the evaluated cells ``c'`` among the 8 neighbours of each
    cell ``c`` (integer indices ``idx`` ``(K, 2)`` on one level, values ``vals`` ``(K,)``); 0 with none, and
    :math:`+\infty` where :math:`v_c = -\infty` beside a finite neighbour."""
    span = int(idx.max()) + 3
    key = (idx[:, 0] + 1) * span + idx[:, 1] + 1  # unique per cell, neighbours included (-1 .. max + 1)
    order = torch.argsort(key)
    skey = key[order]
    nb = idx[:, None, :] + offsets[None]                               # (K, 9, 2), (0, 0) included
    nkey = (nb[..., 0] + 1) * span + nb[..., 1] + 1
    pos = torch.searchsorted(skey, nkey).clamp_max(len(skey) - 1)
    found = skey[pos] == nkey
    nv = vals[order[pos]]
    diff = torch.where(found & torch.isfinite(nv), (nv - vals[:, None]).abs(), torch.zeros_like(nv))
    return diff.nan_to_num(nan=0.0).amax(-1)


def _refine_set(bound: torch.Tensor, total: float, margin: float) -> torch.Tensor:
    """A mask of the fewest cells, largest ``bound`` first, whose refinement leaves the others' summed
    bound below ``total - margin`` (log scale)."""
    order = torch.argsort(bound, descending=True)
    tail = torch.logcumsumexp(bound[order].flip(0), 0).flip(0)  # tail[i] = log Σ_{k >= i} e^{bound_k}
    below = (tail < total - margin).nonzero()
    cut = int(below[0]) if below.numel() else len(order)
    mask = torch.zeros_like(bound, dtype=torch.bool)
    mask[order[:cut]] = True
    return mask


@torch.no_grad()
def adaptive_grid_log_px(model, x: torch.Tensor, lim: float = 10.0, spacing: float = 0.1, refine: int = 4,
                         levels: int = 3, margin: float = 15.0, site: str = "z",
                         max_elements: int = 2 ** 25) -> tuple[torch.Tensor, dict]:
    r""":math:`\log p(x)` of a model with one 2-d latent site by adaptive Riemann quadrature, for posteriors
    much narrower than any grid that covers them all (those of an over-fitted decoder).

    Level 0 is the grid of :func:`grid_log_joint` over :math:`[-\mathrm{lim}, \mathrm{lim}]^2` with the given
    ``spacing`` (shared by all datapoints, each node the centre of a square cell of side :math:`h`). Every
    cell :math:`c` gets a bound on its mass,

    .. math::

        \log\int_c p(x, z)\,dz \;\le\; U_c = v_c + \delta_c + 2\log h, \qquad
        \delta_c = \max_{c'\in\text{neighbours}(c)} |v_{c'} - v_c|,

    with :math:`v_c = \log p(x, z_c)` at its centre: a mode narrower than the spacing, lying between nodes,
    shows as a steep change between neighbouring nodes, and for a Gaussian bump of any width the largest
    change among the 8 neighbours of the node nearest its peak exceeds the peak's height above that node.
    (The bound holds for log-quadratic bumps and is a heuristic for other shapes: a bump that leaves no
    trace at any node — far narrower than the spacing and on the slope of another mode, whose density
    dominates at every node around it — is invisible to this and to any rule that only evaluates the
    joint at points; choose ``spacing`` against the narrowest mode expected.) At each of ``levels``
    levels, per datapoint, the cells with the largest bounds are refined — cut into ``refine`` × ``refine`` sub-cells,
    evaluated at their centres, together with their 8 neighbours — until the summed bound of the cells
    left unrefined is below :math:`e^{-\mathrm{margin}}` of the current estimate; the other cells keep
    their value. The estimate is :math:`\log\sum_\text{cells} p(x, z_c)\,h_c^2`. Every cell's mass is
    bounded, not only those near the largest value, so a narrow second mode is refined, not lost.

    :returns: ``(log_px (N,), info)``; ``info`` holds per datapoint ``estimates`` (the estimate after each
        level, ``(N, levels + 1)``: their last difference is a check of the quadrature), ``unrefined``
        (``(N,)``, :math:`\log\sum_{\text{unrefined }c} e^{U_c} - \log\hat p(x)`: the most, as a log
        fraction of the estimate, that the cells kept at a coarser level could add under the bound),
        ``cells`` (cells evaluated at the finest level), ``edge`` (whether level 0 refines a cell on the
        square's edge: the square is then too small) and the final ``spacing``.
    """
    check_positive_int("refine", refine, minimum=2)
    check_positive_int("levels", levels, minimum=0)
    axes, lj0 = grid_log_joint(model, x, lim, 1 + round(2 * lim / spacing), site=site, max_elements=max_elements)
    n0 = axes.shape[1]
    h0 = float(axes[0, 1] - axes[0, 0])
    dev = lj0.device
    ii, jj = torch.meshgrid(torch.arange(n0, device=dev), torch.arange(n0, device=dev), indexing="ij")
    idx0 = torch.stack([ii.reshape(-1), jj.reshape(-1)], -1)   # cell (i, j) of level 0: z = axes[:, (i, j)]
    offsets = torch.tensor([(a, b) for a in (-1, 0, 1) for b in (-1, 0, 1)], device=dev)
    sub = torch.tensor([(a, b) for a in range(refine) for b in range(refine)], device=dev)
    dtype = lj0.dtype
    log_px, estimates, cells, edge, unrefined = [], [], [], [], []
    for n in range(x.shape[0]):
        idx, vals, h, kept, kept_bound, est = idx0, lj0[:, n].double(), h0, [], [], []
        for level in range(levels + 1):
            est.append(float(torch.logsumexp(torch.cat(kept + [vals + 2 * math.log(h)]), 0)))
            bound = vals + _neighbour_spread(idx, vals, offsets) + 2 * math.log(h)
            bound = torch.where(torch.isnan(bound), math.inf, bound)  # -inf beside a finite value: refine
            sel = idx[_refine_set(bound, est[-1], margin)]
            if level == 0:
                edge.append(bool(((sel == 0) | (sel == n0 - 1)).any()))
            if level == levels:
                break
            near = (sel[:, None, :] + offsets[None]).reshape(-1, 2)
            key = lambda t: t[:, 0] * 4 * n0 * refine ** levels + t[:, 1]  # noqa: E731 - unique per level
            refined = torch.isin(key(idx), key(near))
            kept.append(vals[~refined] + 2 * math.log(h))
            kept_bound.append(bound[~refined])
            idx = (idx[refined][:, None, :] * refine + sub[None]).reshape(-1, 2)
            h = h / refine
            # centre of cell (i, j) at spacing h: -lim - h0/2 + (i + 1/2) h
            z = (-lim - h0 / 2 + (idx.to(dtype) + 0.5) * h)
            vals = _log_joint_at(model, x[n:n + 1], z.to(dtype), site, max_elements).double()
        log_px.append(est[-1])
        estimates.append(est)
        cells.append(int(idx.shape[0]))
        kb = torch.cat(kept_bound) if kept_bound else vals.new_empty(0)
        unrefined.append(float(torch.logsumexp(kb, 0)) - est[-1] if kb.numel() else -math.inf)
    info = {"estimates": torch.tensor(estimates, dtype=torch.float64), "cells": cells, "edge": edge,
            "unrefined": torch.tensor(unrefined, dtype=torch.float64), "spacing": h0 / refine ** levels}
    return torch.tensor(log_px, dtype=torch.float64), info
