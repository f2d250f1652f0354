r"""Importance-sampling estimators of :math:`\log p(x)` and of the ELBO, per datapoint.

With :math:`z_s \sim q(z\mid x)` and :math:`\log w_s = \log p(x,z_s) - \log q(z_s\mid x)`
(:func:`pyro_vaegap.traces.log_weights`):

.. math::

    \mathcal L[q] \approx \frac1S\sum_s \log w_s, \qquad
    \mathcal L_k = \mathbb E\Big[\log \frac1k \sum_{s=1}^k w_s\Big] \le \log p(x)
    \quad\text{(IWAE, Burda et al. 2016)}.

Everything is computed in log space (``logsumexp``), vectorized over samples × datapoints and
streamed in chunks of samples and datapoints so memory stays bounded (5000 samples × 100 MNIST
datapoints is 0.5 M decoder evaluations).

Diagnostics per datapoint: the importance-sampling effective sample size
:math:`(\sum w)^2/\sum w^2` and ArviZ's PSIS :math:`\hat k` (Vehtari et al.), a cheap signal of how
far :math:`q` is from the posterior (:math:`\hat k > 0.7`: the IWAE estimate is unreliable).
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from .traces import log_joint_parts, log_weights
from .utils import check_finite, check_positive_int, progress_bar


@dataclass
class ImportanceResult:
    """Per-datapoint results of :func:`importance_sample`; every field has shape ``(N,)``."""

    elbo: torch.Tensor       #: :math:`\frac1S\sum_s \log w_s`, the MC estimate of L[q]
    elbo_se: torch.Tensor    #: its standard error, std(log w) / sqrt(S)
    iwae: torch.Tensor       #: :math:`\log\frac1S\sum_s w_s`, i.e. IWAE with k = S
    iwae_se: torch.Tensor    #: delta-method standard error of ``iwae``: sqrt((S/ESS - 1)/(S - 1))
    ess: torch.Tensor        #: importance-sampling effective sample size
    khat: torch.Tensor | None  #: PSIS Pareto k-hat (None when not requested)
    num_samples: int


def _psis_khat(lw: torch.Tensor) -> torch.Tensor:
    """ArviZ's PSIS k-hat for each column of ``lw`` (shape ``(S, N)``)."""
    with warnings.catch_warnings():
        # ArviZ announces its refactor on import (a FutureWarning of several lines) and warns for every
        # datapoint whose k-hat exceeds 0.7; that value *is* the diagnostic, reported by the caller
        warnings.simplefilter("ignore")
        import arviz as az

        _, khat = az.psislw(lw.T.double().cpu().numpy())
    return torch.as_tensor(np.asarray(khat), dtype=lw.dtype)


@torch.no_grad()
def importance_sample(model, guide, x: torch.Tensor, num_samples: int = 5000, *, sample_chunk: int = 500,
                      data_chunk: int = 100, psis: bool = True, progress: bool = False,
                      desc: str = "importance sampling", idx: torch.Tensor | None = None) -> ImportanceResult:
    """ELBO, IWAE (k = ``num_samples``), ESS and PSIS k-hat for every row of ``x``.

    :param x: data ``(N, D)``; rows are independent.
    :param idx: global indices ``(N,)`` of the rows of ``x`` (default ``0..N-1``): a per-datum guide
        picks its parameter rows with them, chunk by chunk.
    :param num_samples: ``S`` draws from the guide per datapoint (the paper uses 5000).
    :param sample_chunk: samples drawn per vectorized call; ``data_chunk``: datapoints per call.
        Peak memory is about ``sample_chunk * data_chunk`` decoder outputs.
    :param psis: compute PSIS k-hat (keeps the ``(S, data_chunk)`` log-weights of one chunk).
    """
    S = check_positive_int("num_samples", num_samples)
    sample_chunk = check_positive_int("sample_chunk", sample_chunk)
    data_chunk = check_positive_int("data_chunk", data_chunk)
    out = {k: [] for k in ("elbo", "elbo_se", "iwae", "iwae_se", "ess", "khat")}
    idx = torch.arange(x.shape[0], device=x.device) if idx is None else idx
    n_chunks = math.ceil(x.shape[0] / data_chunk) * math.ceil(S / sample_chunk)
    with progress_bar(n_chunks, desc, progress) as bar:
        for start in range(0, x.shape[0], data_chunk):
            xb, ib = x[start:start + data_chunk], idx[start:start + data_chunk]
            parts = []
            for s0 in range(0, S, sample_chunk):
                lw = log_weights(model, guide, xb, min(sample_chunk, S - s0), idx=ib)
                parts.append(check_finite("importance log-weights", lw))
                bar.update()
            lw = torch.cat(parts)  # (S, n)
            lse = torch.logsumexp(lw, 0)
            lse2 = torch.logsumexp(2 * lw, 0)
            ess = torch.exp(2 * lse - lse2)
            out["elbo"].append(lw.mean(0))
            out["elbo_se"].append(lw.std(0) / math.sqrt(S) if S > 1 else torch.full_like(lse, float("nan")))
            out["iwae"].append(lse - math.log(S))
            out["iwae_se"].append(((S / ess - 1).clamp(min=0) / max(S - 1, 1)).sqrt())
            out["ess"].append(ess)
            if psis:
                out["khat"].append(_psis_khat(lw))
    cat = {k: torch.cat(v) if v else None for k, v in out.items()}
    return ImportanceResult(num_samples=S, **cat)


def iwae_bounds(lw: torch.Tensor, ks) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
    r"""Estimates of :math:`\mathcal L_k` from one matrix of log-weights ``lw`` of shape ``(S, N)``.

    For each ``k`` the ``S`` samples are split into ``S // k`` independent groups; the estimate is the
    mean over groups of :math:`\log\frac1k\sum_{s\in g} w_s`, with its standard error across groups.

    :returns: ``{k: (estimate (N,), standard error (N,))}``.
    """
    S = lw.shape[0]
    out = {}
    for k in ks:
        k = check_positive_int("k", k)
        groups = S // k
        if groups < 1:
            raise ValueError(f"k={k} exceeds the {S} available samples")
        vals = torch.logsumexp(lw[: groups * k].reshape(groups, k, -1), 1) - math.log(k)
        se = vals.std(0) / math.sqrt(groups) if groups > 1 else torch.full_like(vals[0], float("nan"))
        out[k] = (vals.mean(0), se)
    return out


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

    The joint is traced from the model (:func:`pyro_vaegap.traces.log_joint_parts`), not re-implemented:
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
    axis = grid_axis(lim, n, dtype=dtype)
    c = torch.zeros(2, dtype=dtype) if center is None else torch.as_tensor(center, dtype=dtype).reshape(2)
    axes = torch.stack([axis + c[0], axis + c[1]])
    zz = torch.cartesian_prod(axes[0], axes[1])
    chunk = max(1, max_elements // (x.shape[0] * x.shape[1]))
    out = []
    for z in zz.split(chunk):
        lp, ll = log_joint_parts(model, x, {site: z[:, None, :]})
        out.append(lp + ll)
    return axes, torch.cat(out)


@torch.no_grad()
def grid_log_px(model, x: torch.Tensor, lim: float = 7.0, n: int = 601, **kwargs) -> torch.Tensor:
    r""":math:`\log p(x)` of a model with one 2-d latent site by quadrature of :math:`p(x, z)` over the
    grid of :func:`grid_log_joint` (the Riemann sum, which for a smooth integrand whose mass lies well
    inside the square is as accurate as the trapezoid rule), shape ``(N,)``. With ``n = 601`` and
    ``lim = 7`` (spacing 0.023) and posteriors of scale :math:`\gtrsim 0.1` well inside the grid the
    quadrature error is far below :math:`10^{-3}` nats (``tests/test_core.py`` checks it against the
    closed form of a linear-Gaussian model); narrower posteriors need a finer spacing (or a smaller
    square around them: ``center``)."""
    axes, lj = grid_log_joint(model, x, lim, n, **kwargs)
    return torch.logsumexp(lj, 0) + 2 * math.log(float(axes[0, 1] - axes[0, 0]))


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


@torch.no_grad()
def adaptive_grid_log_px(model, x: torch.Tensor, lim: float = 10.0, spacing: float = 0.1, refine: int = 4,
                         levels: int = 3, margin: float = 15.0, site: str = "z",
                         max_elements: int = 2 ** 25) -> tuple[torch.Tensor, dict]:
    r""":math:`\log p(x)` of a model with one 2-d latent site by adaptive Riemann quadrature, for posteriors
    much narrower than any grid that covers them all (those of an over-fitted decoder).

    Level 0 is the grid of :func:`grid_log_joint` over :math:`[-\mathrm{lim}, \mathrm{lim}]^2` with the given
    ``spacing`` (shared by all datapoints, each node the centre of a square cell). At each of ``levels``
    levels, per datapoint, every cell whose :math:`\log p(x, z)` is within ``margin`` nats of that level's
    largest, and its 8 neighbours, is cut into ``refine``² sub-cells, evaluated at their centres; the other
    cells keep their value. The estimate is :math:`\log\sum_\text{cells} p(x, z_c)\,h_c^2`. Cells that are
    not refined lie at least ``margin`` nats below the peak, so their coarse value costs a negligible
    share of the integral; the refined ones converge as the spacing shrinks.

    :returns: ``(log_px (N,), info)``; ``info`` holds per datapoint ``estimates`` (the estimate after each
        level, ``(N, levels + 1)``: their last difference is a check of the quadrature), ``cells`` (cells
        evaluated at the finest level), ``edge`` (whether level 0 put mass within ``margin`` of the peak on
        the square's edge: the square is then too small) and the final ``spacing``.
    """
    check_positive_int("refine", refine, minimum=2)
    check_positive_int("levels", levels, minimum=0)
    axes, lj0 = grid_log_joint(model, x, lim, 1 + round(2 * lim / spacing), site=site, max_elements=max_elements)
    n0 = axes.shape[1]
    h0 = float(axes[0, 1] - axes[0, 0])
    ii, jj = torch.meshgrid(torch.arange(n0), torch.arange(n0), indexing="ij")
    idx0 = torch.stack([ii.reshape(-1), jj.reshape(-1)], -1)   # cell (i, j) of level 0: z = axes[:, (i, j)]
    offsets = torch.tensor([(a, b) for a in (-1, 0, 1) for b in (-1, 0, 1)])
    sub = torch.tensor([(a, b) for a in range(refine) for b in range(refine)])
    dtype = lj0.dtype
    log_px, estimates, cells, edge = [], [], [], []
    for n in range(x.shape[0]):
        idx, vals, h, kept, est = idx0, lj0[:, n], h0, [], []
        sel0 = vals > vals.max() - margin
        edge.append(bool(((idx[sel0] == 0) | (idx[sel0] == n0 - 1)).any()))
        for level in range(levels + 1):
            est.append(float(torch.logsumexp(torch.cat(kept + [vals + 2 * math.log(h)]), 0)))
            if level == levels:
                break
            sel = idx[vals > vals.max() - margin]
            near = (sel[:, None, :] + offsets[None]).reshape(-1, 2)
            key = lambda t: t[:, 0] * 4 * n0 * refine ** levels + t[:, 1]  # noqa: E731 - unique per level
            refined = torch.isin(key(idx), key(near))
            kept.append(vals[~refined] + 2 * math.log(h))
            idx = (idx[refined][:, None, :] * refine + sub[None]).reshape(-1, 2)
            h = h / refine
            # centre of cell (i, j) at spacing h: -lim - h0/2 + (i + 1/2) h
            z = (-lim - h0 / 2 + (idx.to(dtype) + 0.5) * h)
            vals = _log_joint_at(model, x[n:n + 1], z.to(dtype), site, max_elements)
        log_px.append(est[-1])
        estimates.append(est)
        cells.append(int(idx.shape[0]))
    info = {"estimates": torch.tensor(estimates, dtype=torch.float64), "cells": cells, "edge": edge,
            "spacing": h0 / refine ** levels}
    return torch.tensor(log_px, dtype=torch.float64), info
