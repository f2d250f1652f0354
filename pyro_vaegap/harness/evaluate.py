"""Held-out log-likelihood of a trained model: ELBO, IWAE and their gap per datapoint, in nats and bits."""
from __future__ import annotations

import math

import torch

from ..estimators.importance import importance_sample
from ..utils import module_device

LN2 = math.log(2.0)


def evaluate(model, guide, x: torch.Tensor, num_samples: int, dims: int | None = None,
             keep_per_point: bool = False, **chunks) -> dict:
    r"""Per-datapoint ELBO and IWAE(``num_samples``) on ``x``, summarized in nats and bits.

    Returns means over datapoints of :math:`-\mathrm{ELBO}` and of :math:`-\log\hat p(x)` (IWAE with
    ``k = num_samples``), each with its standard error across datapoints (the data's sampling error,
    which dominates the per-point Monte Carlo error here), the inference gap
    :math:`\log\hat p(x) - \mathrm{ELBO} \ge 0`, and, with ``dims``, the same per dimension in bits.
    Bits are nats / ln 2 exactly: for continuous data this is :math:`-\log_2` of a density.
    ``chunks`` (``sample_chunk``, ``data_chunk``) go to :func:`~pyro_vaegap.estimators.importance.importance_sample`;
    ``keep_per_point`` adds ``nll_nats_per_point``, the list of :math:`-\log\hat p(x_n)` (for paired
    comparisons of models on the same data).
    """
    x = model.validate_data(x.to(module_device(model)))
    r = importance_sample(model, guide, x, num_samples, psis=False, **chunks)
    n = x.shape[0]
    out = {}
    for key, per_point in (("neg_elbo", -r.elbo), ("nll", -r.iwae), ("gap", r.iwae - r.elbo)):
        mean, se = float(per_point.mean()), float(per_point.std() / math.sqrt(n)) if n > 1 else float("nan")
        out[f"{key}_nats"], out[f"{key}_nats_se"] = mean, se
        out[f"{key}_bits"], out[f"{key}_bits_se"] = mean / LN2, se / LN2
        if dims:
            out[f"{key}_bits_per_dim"] = mean / LN2 / dims
    out["num_points"], out["num_samples"] = n, num_samples
    out["max_iwae_mc_se_nats"] = float(r.iwae_se.max())
    if keep_per_point:
        out["nll_nats_per_point"] = [float(v) for v in -r.iwae.cpu()]
    return out
