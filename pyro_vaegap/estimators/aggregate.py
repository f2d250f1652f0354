r"""The aggregate posterior :math:`q(z) = \mathbb E_{p_D(x)}\,q(z\mid x)` of a Gaussian encoder, over a data set.

With :math:`p_D` the empirical distribution of ``N`` rows :math:`x_1..x_N` and an encoder
:math:`q(z\mid x_n) = \mathcal N(\mu_n, \mathrm{diag}\,\sigma_n^2)` (any guide whose ``encode(x)``
returns ``(loc, scale)``: the FFG encoder and the families built on it), :math:`q(z)` is the
equal-weight mixture of the ``N`` encoder distributions: it is known exactly, not estimated.

* :func:`aggregate_moments` — its mean and covariance in closed form,
  :math:`\mathrm{Cov}[q(z)] = \mathrm{Cov}_n[\mu_n] + \frac1N\sum_n \mathrm{diag}\,\sigma_n^2` (the law of
  total variance); :func:`sample_aggregate` draws from it and :func:`log_det_cov` is the
  :math:`\log\det` of a sample covariance, the InfoVAE paper's measure of "variance over-estimation"
  (the prior :math:`\mathcal N(0, I)` has :math:`\log\det I = 0`).
* :func:`mutual_information` — :math:`I_q(x; z) = \mathbb E_{p_D}\mathrm{KL}(q(z\mid x)\,\Vert\,q(z))`,
  the average KL :math:`\mathbb E_{p_D}\mathrm{KL}(q(z\mid x)\Vert p(z))` and the marginal
  :math:`\mathrm{KL}(q(z)\Vert p(z))`, which add up: :math:`\mathbb E_{p_D}\mathrm{KL}(q(z\mid x)\Vert p(z))
  = I_q(x;z) + \mathrm{KL}(q(z)\Vert p(z))` (Hoffman & Johnson 2016, "ELBO surgery").

Bias of the mutual-information estimate. For :math:`z_i \sim q(z\mid x_i)`,

.. math::

    \hat I = \frac1M\sum_i \Big[\log q(z_i\mid x_i) - \log \frac1N\sum_{n=1}^N q(z_i\mid x_n)\Big]

uses the exact mixture of *all* ``N`` rows, the one that ``z_i`` was drawn through included, so it is
unbiased (up to the Monte Carlo error of the ``M`` sampled rows and draws, reported as a standard error)
for :math:`I_q` under the empirical distribution of those rows: the quantity InfoVAE's objective
weighs. It can never exceed :math:`\log N`: when the posteriors of different rows do not overlap,
each :math:`z_i` is explained by its own component alone and :math:`\hat I \to \log N` whatever the
encoder's precision. Read as an estimate of the mutual information under the *population*
:math:`p(x)` (of which the rows are a sample), it is the InfoNCE lower bound with critic
:math:`\log q(z\mid x)` (van den Oord et al. 2018; Poole et al. 2019), biased low and capped at
:math:`\log N`; the minibatch version (the mixture over a batch of ``B`` rows) is the same bound with
the cap :math:`\log B`. The leave-one-out estimate, the mixture over the other :math:`N-1` rows, is an
upper bound on the population value in expectation (Poole et al.'s :math:`I_{\mathrm{L1Out}}`):
both are returned, and together they bracket it.
"""
from __future__ import annotations

import math

import torch

from ..utils import check_positive_int

LOG_2PI = math.log(2.0 * math.pi)


@torch.no_grad()
def encode(guide, x: torch.Tensor, chunk: int = 2000) -> tuple[torch.Tensor, torch.Tensor]:
    """``(loc, scale)``, each ``(N, d)``, of a Gaussian encoder on the rows of ``x``, in chunks.

    :raises TypeError: if the guide has no ``encode`` method (its posterior is not one Gaussian)."""
    if not callable(getattr(guide, "encode", None)):
        raise TypeError(f"{type(guide).__name__} has no encode(x) -> (loc, scale): the aggregate posterior here "
                        "needs a Gaussian encoder (e.g. the FFG family)")
    locs, scales = zip(*(guide.encode(x[s:s + chunk]) for s in range(0, x.shape[0], chunk)))
    return torch.cat(locs), torch.cat(scales)


def aggregate_moments(loc: torch.Tensor, scale: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Mean ``(d,)`` and covariance ``(d, d)`` of the mixture :math:`\frac1N\sum_n\mathcal N(\mu_n,
    \mathrm{diag}\,\sigma_n^2)`, exactly: :math:`\mathrm{Cov} = \frac1N\sum_n(\mu_n-\bar\mu)(\mu_n-\bar\mu)^\top
    + \frac1N\sum_n\mathrm{diag}\,\sigma_n^2`, in float64."""
    loc, scale = loc.double(), scale.double()
    mean = loc.mean(0)
    centred = loc - mean
    return mean, centred.T @ centred / loc.shape[0] + torch.diag((scale ** 2).mean(0))


def sample_aggregate(loc: torch.Tensor, scale: torch.Tensor, draws: int = 1,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """``draws`` draws of each row's :math:`q(z\\mid x_n)`, ``(draws * N, d)``: draws of the aggregate
    posterior (exactly ``draws`` per row, a stratified sample of the mixture)."""
    check_positive_int("draws", draws)
    # drawn by the (CPU) generator, then moved: the same draws on every device
    eps = torch.randn((draws,) + tuple(loc.shape), generator=generator, dtype=loc.dtype).to(loc.device)
    return (loc + scale * eps).reshape(-1, loc.shape[-1])


def log_det_cov(z: torch.Tensor) -> float:
    """:math:`\\log\\det` of the sample covariance of the rows of ``z`` ``(n, d)`` (float64)."""
    if z.shape[0] <= z.shape[1]:
        raise ValueError(f"{z.shape[0]} draws cannot estimate a {z.shape[1]}x{z.shape[1]} covariance")
    sign, value = torch.linalg.slogdet(torch.cov(z.double().T).reshape(z.shape[1], z.shape[1]))
    return float(value) if sign > 0 else float("-inf")


def log_normal_pairs(z: torch.Tensor, loc: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    r""":math:`\log\mathcal N(z_m;\ \mu_n, \mathrm{diag}\,\sigma_n^2)` for every pair, ``(M, N)``, in float64."""
    z, loc, scale = z.double(), loc.double(), scale.double()
    prec = scale ** -2                                   # (N, d)
    # sum_k (z_k - mu_k)^2 / s_k^2 = z^2 . prec - 2 z . (mu prec) + mu^2 . prec (expanded: one matmul each)
    quad = (z ** 2) @ prec.T - 2 * z @ (loc * prec).T + (loc ** 2 * prec).sum(-1)
    return -0.5 * quad.clamp(min=0) - scale.log().sum(-1) - 0.5 * loc.shape[-1] * LOG_2PI


@torch.no_grad()
def mutual_information(loc: torch.Tensor, scale: torch.Tensor, num_points: int | None = None, draws: int = 1,
                       seed: int = 0, chunk: int = 500) -> dict:
    r"""The mutual information :math:`I_q(x; z)` of the empirical distribution of the ``N`` rows whose
    encoder outputs are ``loc``, ``scale`` ``(N, d)``, with the average and the marginal KL to the prior
    :math:`\mathcal N(0, I)` (see the module docstring for the estimator and its bias).

    :param num_points: rows :math:`x_i` of the outer expectation (a seeded random subset; default all);
        the mixture :math:`q(z)` always uses all ``N`` rows.
    :param draws: draws :math:`z \sim q(z\mid x_i)` per row.
    :returns: ``mi`` (with-self: exact for the rows' empirical distribution, the InfoNCE lower bound for
        the population), ``mi_loo`` (leave-one-out: an upper bound for the population), ``avg_kl``
        (:math:`\mathbb E\,\mathrm{KL}(q(z\mid x)\Vert p(z))`, analytic), ``marginal_kl``
        (:math:`\mathbb E_{q(z)}[\log q(z) - \log p(z)]` on the same draws), each with a standard error
        ``*_se`` over the sampled rows, and ``log_n`` (:math:`\log N`, the cap of ``mi``), ``num_points``,
        ``draws``.
    """
    N, d = loc.shape
    if N < 2:
        raise ValueError("the mutual information needs at least 2 rows")
    M = N if num_points is None else check_positive_int("num_points", num_points)
    if M > N:
        raise ValueError(f"num_points={M} exceeds the {N} rows")
    gen = torch.Generator().manual_seed(seed)
    rows = torch.randperm(N, generator=gen)[:M].sort().values.to(loc.device)
    per_row = {"mi": [], "mi_loo": [], "marginal_kl": []}
    for s in range(0, M, chunk):
        r = rows[s:s + chunk]
        z = sample_aggregate(loc[r], scale[r], draws, gen)               # (draws * m, d), row = k*m + j
        own = r.repeat(draws)
        lq = log_normal_pairs(z, loc, scale)                             # (draws*m, N)
        diag = torch.arange(z.shape[0], device=z.device)
        log_own = lq[diag, own]
        log_mix = torch.logsumexp(lq, 1) - math.log(N)
        # leave-one-out: the mixture without the own component, log((N q_mix - q_own) / (N - 1))
        others = lq.clone()
        others[diag, own] = -math.inf
        log_loo = torch.logsumexp(others, 1) - math.log(N - 1)
        log_prior = -0.5 * (z.double() ** 2).sum(-1) - 0.5 * d * LOG_2PI
        m = r.numel()
        for key, v in (("mi", log_own - log_mix), ("mi_loo", log_own - log_loo), ("marginal_kl", log_mix - log_prior)):
            per_row[key].append(v.reshape(draws, m).mean(0))
    loc_d, scale_d = loc.double()[rows], scale.double()[rows]
    avg_kl = 0.5 * (loc_d ** 2 + scale_d ** 2 - 1 - 2 * scale_d.log()).sum(-1)
    out = {"log_n": math.log(N), "num_rows": N, "num_points": M, "draws": draws}
    for key, v in [(k, torch.cat(v)) for k, v in per_row.items()] + [("avg_kl", avg_kl)]:
        out[key] = float(v.mean())
        out[f"{key}_se"] = float(v.std() / math.sqrt(M)) if M > 1 else float("nan")
    return out
