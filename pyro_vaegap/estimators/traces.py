r"""Effect-handler plumbing shared by every estimator.

Estimators never re-implement a model's density: they *trace* the Pyro model and guide.

* :func:`guide_model_traces` runs the guide under an outer plate of ``S`` samples (``dim=-2``) and
  replays the model against it (``poutine.trace`` + ``poutine.replay``);
* :func:`log_weights` turns those traces into importance log-weights
  :math:`\log w_{sn} = \log p(x_n, z_{sn}) - \log q(z_{sn}\mid x_n)`, shape ``(S, N)``;
* :func:`log_joint_parts` conditions the model on given latents (``poutine.condition``) and returns
  :math:`\log p(z)` and :math:`\log p(x\mid z)` separately with gradients, for AIS;
* :func:`prior_latents` and :func:`simulate` draw from the prior and from the joint
  (``poutine.uncondition``), for AIS initialization and BDMC.

Log-densities are the sites' own ``log_prob`` (masks applied, *plate scales not applied*), so every
number is per datapoint whatever subsampling scale a training run used.
"""
from __future__ import annotations

import pyro
import torch
from pyro import poutine
from pyro.poutine.util import site_is_subsample
from torch.distributions import constraints

from ..contract.model import call, quiet_frozen_modules

SAMPLE_DIM = -2  #: the dimension estimators use for samples / chains; the data plate is at -1


def sample_plate(num: int, name: str = "samples"):
    """The outer plate over ``num`` samples or chains, at ``dim=-2``."""
    return pyro.plate(name, num, dim=SAMPLE_DIM)


def sample_sites(trace, observed: bool | None = None, names=None, exclude=False):
    """``(name, site)`` of the trace's sample sites (plate subsample sites excluded).

    :param observed: keep only observed (``True``) or only latent (``False``) sites.
    :param names: keep only the sites named in ``names`` (or all others when ``exclude``).
    """
    for name, site in trace.nodes.items():
        if site["type"] != "sample" or site_is_subsample(site):
            continue
        if observed is not None and bool(site["is_observed"]) != observed:
            continue
        if names is not None and (name in names) == exclude:
            continue
        yield name, site


def site_log_prob(site) -> torch.Tensor:
    """The site's own ``log_prob`` of its value, with its mask applied (plate scales not applied)."""
    lp = site["fn"].log_prob(site["value"])
    if site["mask"] is not None and site["mask"] is not True:
        lp = lp.masked_fill(~site["mask"], 0.0) if torch.is_tensor(site["mask"]) else lp * 0.0
    return lp


def sum_log_prob(trace, shape, **which) -> torch.Tensor:
    """Sum of the sites' log-densities, each broadcast to ``shape`` (e.g. ``(S, N)``).

    :param which: site selection passed to :func:`sample_sites` (default: every sample site).
    """
    total = None
    for name, site in sample_sites(trace, **which):
        lp = site_log_prob(site)
        # not while a loss is traced: its graph is traced per input shape, and the eager call that checks the
        # trace (training.traced) makes this test
        if not torch.jit.is_tracing() and (lp.dim() > len(shape)
                                           or lp.shape != torch.broadcast_shapes(lp.shape, shape)):
            raise ValueError(
                f"site {name!r} has log_prob of batch shape {tuple(lp.shape)}, which does not broadcast to "
                f"(samples, datapoints) = {tuple(shape)}: sample every site inside the data plate"
            )
        lp = lp.expand(shape)
        total = lp if total is None else total + lp
    if total is None:
        raise ValueError("the trace has no sample sites")
    return total


def guide_model_traces(model, guide, x, num_samples: int, idx=None):
    """Trace ``guide`` under a plate of ``num_samples`` and replay ``model`` against it."""
    with sample_plate(num_samples):
        g = poutine.trace(call).get_trace(guide, x, idx)
        m = poutine.trace(poutine.replay(call, trace=g)).get_trace(model, x, idx)
    return g, m


def log_weights(model, guide, x, num_samples: int, idx=None) -> torch.Tensor:
    r""":math:`\log p(x_n, z_{sn}) - \log q(z_{sn}\mid x_n)` for ``z ~ q``: shape ``(num_samples, N)``.

    The guide term includes auxiliary sites and ``pyro.factor`` reverse models (see
    :mod:`pyro_vaegap.contract.guide`), so ``exp`` of it is an unbiased estimate of :math:`p(x_n)`.
    """
    g, m = guide_model_traces(model, guide, x, num_samples, idx)
    shape = (num_samples, x.shape[0])
    return sum_log_prob(m, shape) - sum_log_prob(g, shape)


def _is_real(support) -> bool:
    while isinstance(support, constraints.independent):
        support = support.base_constraint
    return support is constraints.real


def prior_latents(model, x, num_chains: int, idx=None) -> dict[str, torch.Tensor]:
    """Latent values drawn from the prior, each of shape ``(num_chains, N, *event)``."""
    with torch.no_grad(), sample_plate(num_chains, "chains"):
        tr = poutine.trace(call).get_trace(model, x, idx)
    out = {}
    for name, site in sample_sites(tr, observed=False):
        if not _is_real(site["fn"].support):
            raise ValueError(
                f"latent site {name!r} has support {site['fn'].support}; AIS/HMC here needs real-valued latents"
            )
        out[name] = site["value"].expand(site["fn"].batch_shape + site["fn"].event_shape).detach()
    return out


def log_joint_parts(model, x, latents: dict[str, torch.Tensor], idx=None):
    r"""``(log p(z), log p(x|z))`` of the model conditioned on ``latents``, each ``(K, N)``.

    ``latents`` values have shape ``(K, N, *event)``; gradients flow back to them.
    """
    K = next(iter(latents.values())).shape[0]
    with sample_plate(K, "chains"):
        tr = poutine.trace(poutine.condition(call, data=latents)).get_trace(model, x, idx)
    shape = (K, x.shape[0])
    # poutine.condition marks the conditioned latents as observed, so split by name
    return (sum_log_prob(tr, shape, names=latents),
            sum_log_prob(tr, shape, names=latents, exclude=True))


@torch.no_grad()
def simulate(model, num: int, like: torch.Tensor):
    """Draw ``num`` pairs ``(z, x)`` from the joint ``p(z) p(x|z)`` (``poutine.uncondition``).

    :param like: a tensor whose rows have the data's shape and dtype (its values are ignored).
    :returns: ``(x, latents)`` — ``x`` of shape ``(num, D)`` and ``{site: (num, *event)}``; each
        latent row is an exact draw from the posterior of its ``x`` row (used by BDMC).
    """
    placeholder = like[:1].expand(num, *like.shape[1:]).clone()
    tr = poutine.trace(poutine.uncondition(call)).get_trace(model, placeholder)
    x = None
    latents = {}
    for name, site in sample_sites(tr):
        if site["infer"].get("was_observed", False):
            x = site["value"]
        else:
            latents[name] = site["value"]
    if x is None:
        raise ValueError("the model has no observed site to simulate")
    return x, latents
