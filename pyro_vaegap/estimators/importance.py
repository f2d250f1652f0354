r"""Importance-sampling estimators of :math:`\log p(x)` and of the ELBO, per datapoint.

With :math:`z_s \sim q(z\mid x)` and :math:`\log w_s = \log p(x,z_s) - \log q(z_s\mid x)`
(:func:`pyro_vaegap.estimators.traces.log_weights`):

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
from .traces import log_joint_parts, log_weights, prior_latents
from ..utils import check_finite, check_positive_int, progress_bar


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


#: fewest draws for which PSIS k-hat is defined: ArviZ fits the Pareto tail to the largest
#: ``ceil(min(S / 5, 3 sqrt(S)))`` weights and only when that is more than 4 draws (fewer: an IndexError at
#: S = 1, k-hat = inf otherwise)
PSIS_MIN_SAMPLES = 21


def _psis_khat(lw: torch.Tensor) -> torch.Tensor:
    """ArviZ's PSIS k-hat for each column of ``lw`` (shape ``(S, N)``); NaN (undefined) for every column
    when ``S`` < :data:`PSIS_MIN_SAMPLES`."""
    if lw.shape[0] < PSIS_MIN_SAMPLES:
        return torch.full((lw.shape[1],), float("nan"), dtype=lw.dtype)
    with warnings.catch_warnings():
        # ArviZ announces its refactor on import (a FutureWarning of several lines) and warns for every
        # datapoint whose k-hat exceeds 0.7; that value *is* the diagnostic, reported by the caller
        warnings.simplefilter("ignore")
        import arviz as az

        _, khat = az.psislw(lw.T.double().cpu().numpy())
    return torch.as_tensor(np.asarray(khat), dtype=lw.dtype)


def _ess_and_se(S: int, lse: torch.Tensor, lse2: torch.Tensor):
    r"""From :math:`\log\sum_s w_s` and :math:`\log\sum_s w_s^2` over ``S`` weights: the effective sample
    size :math:`(\sum w)^2/\sum w^2` and the delta-method standard error of :math:`\log\frac1S\sum w`,
    :math:`\sqrt{(S/\mathrm{ESS} - 1)/(S - 1)}`."""
    ess = torch.exp(2 * lse - lse2)
    return ess, ((S / ess - 1).clamp(min=0) / max(S - 1, 1)).sqrt()


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
    :param psis: compute PSIS k-hat (keeps the ``(S, data_chunk)`` log-weights of one chunk); NaN, undefined,
        with fewer than :data:`PSIS_MIN_SAMPLES` draws.
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
            ess, se = _ess_and_se(S, lse, torch.logsumexp(2 * lw, 0))
            out["elbo"].append(lw.mean(0))
            out["elbo_se"].append(lw.std(0) / math.sqrt(S) if S > 1 else torch.full_like(lse, float("nan")))
            out["iwae"].append(lse - math.log(S))
            out["iwae_se"].append(se)
            out["ess"].append(ess)
            if psis:
                out["khat"].append(_psis_khat(lw))
    cat = {k: torch.cat(v) if v else None for k, v in out.items()}
    return ImportanceResult(num_samples=S, **cat)


@dataclass
class PriorImportanceResult:
    """Per-datapoint results of :func:`prior_importance`; every field has shape ``(N,)``."""

    log_px: torch.Tensor     #: :math:`\log\frac1S\sum_s p(x\mid z_s)`, :math:`z_s\sim p(z)`
    log_px_se: torch.Tensor  #: delta-method standard error, sqrt((S/ESS - 1)/(S - 1))
    ess: torch.Tensor        #: effective sample size of the prior draws' weights
    num_samples: int


@torch.no_grad()
def prior_importance(model, x: torch.Tensor, num_samples: int = 50_000, *, sample_chunk: int = 1000,
                     data_chunk: int = 100, progress: bool = False, idx: torch.Tensor | None = None
                     ) -> PriorImportanceResult:
    r"""Importance sampling of :math:`\log p(x)` with the model's own prior as the proposal, for every row of ``x``:

    .. math::

        \hat p(x) = \frac1S\sum_{s=1}^S p(x\mid z_s), \qquad z_s \sim p(z),

    the estimator Zhao et al. (InfoVAE) report, with 50,000 draws (the default). :math:`\hat p(x)` is unbiased,
    so :math:`\log\hat p(x)` is a stochastic lower bound like IWAE's, and it needs no encoder — which is why it
    is used to compare models whose encoders differ — but its effective sample size is tiny wherever the
    posterior is narrow compared with the prior: read ``ess`` before trusting it. Draws come from
    :func:`~pyro_vaegap.estimators.traces.prior_latents` (the model's own sample statements) and weights from
    :func:`~pyro_vaegap.estimators.traces.log_joint_parts`, so any model with real-valued latents works unchanged.
    Streamed over ``sample_chunk`` draws at a time (memory: ``sample_chunk · data_chunk`` decoder outputs);
    the running :math:`\log\sum w` and :math:`\log\sum w^2` give the estimate and its ESS.
    """
    S = check_positive_int("num_samples", num_samples)
    sample_chunk = check_positive_int("sample_chunk", sample_chunk)
    data_chunk = check_positive_int("data_chunk", data_chunk)
    idx = torch.arange(x.shape[0], device=x.device) if idx is None else idx
    out = {k: [] for k in ("log_px", "log_px_se", "ess")}
    n_chunks = math.ceil(x.shape[0] / data_chunk) * math.ceil(S / sample_chunk)
    with progress_bar(n_chunks, "prior importance sampling", progress) as bar:
        for start in range(0, x.shape[0], data_chunk):
            xb, ib = x[start:start + data_chunk], idx[start:start + data_chunk]
            lse = lse2 = None
            for s0 in range(0, S, sample_chunk):
                z = prior_latents(model, xb, min(sample_chunk, S - s0), idx=ib)
                lw = check_finite("prior importance log-weights", log_joint_parts(model, xb, z, idx=ib)[1])
                part, part2 = torch.logsumexp(lw, 0), torch.logsumexp(2 * lw, 0)
                lse = part if lse is None else torch.logaddexp(lse, part)
                lse2 = part2 if lse2 is None else torch.logaddexp(lse2, part2)
                bar.update()
            ess, se = _ess_and_se(S, lse, lse2)
            out["log_px"].append(lse - math.log(S))
            out["log_px_se"].append(se)
            out["ess"].append(ess)
    return PriorImportanceResult(num_samples=S, **{k: torch.cat(v) for k, v in out.items()})


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
