r"""Training objectives: Pyro's ELBOs, annealing through poutine scales, and free bits.

Objectives (``TrainConfig.objective``):

* ``"elbo"`` — :class:`pyro.infer.Trace_ELBO`, MC estimate of
  :math:`\mathbb E_q[\log p(x,z) - \log q(z\mid x)]`;
* ``"mean_field"`` — :class:`pyro.infer.TraceMeanField_ELBO` (analytic KL where available);
* ``"iwae"`` — :class:`pyro.infer.RenyiELBO` with :math:`\alpha = 0` and ``num_particles = k``,
  i.e. the IWAE bound :math:`\mathcal L_k` (Burda et al. 2016).

Annealing (``TrainConfig.anneal``, a factor rising linearly from 0 to 1):

* ``"entropy"`` (Cremer et al. 2018): maximize :math:`\mathbb E_q[\log p(x,z) - \lambda\log q(z\mid x)]`
  — every guide site's log-density is scaled by :math:`\lambda` (:class:`ScaleSites`);
* ``"kl"``: :math:`\mathbb E_q[\log p(x\mid z)] - \beta\,\mathrm{KL}` — the latent sites of model
  and guide are scaled by :math:`\beta`.

Free bits (``TrainConfig.free_bits`` = :math:`\alpha` bits, Kingma et al. 2016 in the per-datapoint,
per-dimension form of R. Yu's tutorial): :class:`FreeBitsELBO`.
"""
from __future__ import annotations

import math

import torch
from pyro.infer import RenyiELBO, Trace_ELBO, TraceMeanField_ELBO
from pyro.poutine.messenger import Messenger
from torch.distributions import Independent, kl_divergence

from .traces import guide_model_traces, sample_sites, site_log_prob, sum_log_prob
from .utils import ConfigError

LN2 = math.log(2.0)


class ScaleSites(Messenger):
    """Multiply the log-density of sample sites by ``factor`` (allowed to be 0, unlike poutine.scale).

    :param latent_only: scale only latent (non-observed) sites.
    """

    def __init__(self, factor: float, latent_only: bool = False):
        super().__init__()
        self.factor, self.latent_only = float(factor), latent_only

    def _process_message(self, msg):
        if msg["type"] == "sample" and not (self.latent_only and msg["is_observed"]):
            msg["scale"] = msg["scale"] * self.factor


def annealed(model, guide, cfg, factor: float):
    """``(model, guide)`` with ``cfg.anneal`` (entropy or KL annealing) at ``factor`` applied through
    poutine scales."""
    if cfg.anneal == "none" or factor >= 1:
        return model, guide
    if cfg.anneal == "entropy":
        return model, ScaleSites(factor)(guide)
    return ScaleSites(factor, latent_only=True)(model), ScaleSites(factor)(guide)


def _univariate(fn):
    """``fn`` with every ``Independent`` wrapper removed when what is left is univariate (each event
    element its own batch element), else ``None``."""
    while isinstance(fn, Independent):  # pyro's Independent subclasses torch's
        fn = fn.base_dist
    return fn if fn.event_shape == torch.Size() else None


def _elementwise_kl(q_fn, p_fn):
    """KL(q ‖ p) per event element when both are univariate under ``Independent`` and the pair has
    a registered analytic KL, else ``None``."""
    q, p = _univariate(q_fn), _univariate(p_fn)
    if q is None or p is None:
        return None
    try:
        return kl_divergence(q, p)
    except NotImplementedError:
        return None


class _PerPointLoss:
    r"""``loss_and_grads`` of Pyro's ELBOs for an objective given per datapoint by :meth:`elbo`:
    back-propagates the loss :math:`-\sum_n` ``elbo(model, guide, x)[n]`` and returns its value."""

    def elbo(self, model, guide, x) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def loss_and_grads(self, model, guide, x):
        loss = -self.elbo(model, guide, x).sum()
        loss.backward()
        return float(loss.detach())


class FreeBitsELBO(_PerPointLoss):
    r"""The free-bits objective, with the ``loss_and_grads`` interface of Pyro's ELBOs.

    For each datapoint and each latent dimension :math:`j` the KL term is kept from falling below
    :math:`\lambda = \alpha\ln 2` nats:

    .. math::

        \mathcal L_\lambda(x) = \mathbb E_{q}\big[\log p(x\mid z) + (\text{other terms of }\log w)\big]
            - \sum_{j} \max\big(\lambda,\ \mathrm{KL}(q(z_j\mid x)\,\Vert\,p(z_j))\big)
            \ \le\ \mathrm{ELBO}(x).

    It is R. Yu's tutorial objective (``relu(KL_j − α ln 2) + α ln 2`` per datapoint and dimension):
    below :math:`\lambda` the KL exerts no pull, so the encoder learns to put a few bits in each
    latent dimension before the regularizer acts, instead of collapsing to the prior.

    The KL is analytic and per dimension where model and guide sites are (``Independent`` wrappers
    of) univariate distributions with a registered ``kl_divergence`` — the FFG guide against the
    Normal prior. Any other shared latent site is one group: its single-sample estimate
    :math:`\log q(z) - \log p(z)` is held above :math:`\lambda` times the site's event size (a
    biased but still valid lower bound on the ELBO). Everything else of :math:`\log w` (the
    observed sites, guide-only auxiliary sites, ``pyro.factor`` terms) enters unchanged, read from
    the traces as every estimator here reads it.

    :param free_bits: :math:`\alpha`, in bits per latent dimension (the tutorial uses 0.05).
    :param num_particles: samples of :math:`z` per datapoint (vectorized).
    """

    def __init__(self, free_bits: float, num_particles: int = 1):
        if not (math.isfinite(free_bits) and free_bits > 0):
            raise ConfigError(f"free_bits={free_bits!r} is not allowed: expected a positive number of bits")
        self.free_nats = float(free_bits) * LN2
        self.num_particles = num_particles

    def objective(self, model, guide, x) -> torch.Tensor:
        r""":math:`\mathcal L_\lambda` per sample and datapoint, shape ``(num_particles, N)``."""
        g, m = guide_model_traces(model, guide, x, self.num_particles)
        shape = (self.num_particles, x.shape[0])
        total = sum_log_prob(m, shape) - sum_log_prob(g, shape)   # log w
        for name, q_site in sample_sites(g, observed=False):
            if name not in m.nodes or m.nodes[name]["is_observed"]:
                continue
            p_site = m.nodes[name]
            mc_kl = (site_log_prob(q_site) - site_log_prob(p_site)).expand(shape)
            kl = _elementwise_kl(q_site["fn"], p_site["fn"])
            if kl is None:
                size = max(1, q_site["fn"].event_shape.numel())
                held = mc_kl.clamp(min=self.free_nats * size)
            else:
                kl = kl.expand(*shape, *kl.shape[len(shape):])
                held = kl.clamp(min=self.free_nats).flatten(len(shape)).sum(-1)
            # swap the site's single-sample KL inside log w for the held-up one
            total = total + mc_kl - held
        return total

    def elbo(self, model, guide, x) -> torch.Tensor:
        r""":math:`\mathcal L_\lambda` per datapoint (mean over particles), shape ``(N,)``."""
        return self.objective(model, guide, x).mean(0)


class CustomELBO(_PerPointLoss):
    """The objective of a guide with ``custom_elbo`` (see :meth:`pyro_vaegap.guide.Guide.elbo`), with
    the ``loss_and_grads`` interface of Pyro's ELBOs: loss ``-Σ_n guide.elbo(model, x, num_particles)``.

    Only ``objective="elbo"`` without annealing or free bits is defined for such guides (they scale
    or read Pyro sites, which a custom estimator does not expose); anything else is refused rather
    than ignored.
    """

    def __init__(self, cfg, guide):
        if cfg.objective != "elbo" or cfg.anneal != "none" or cfg.free_bits:
            raise ConfigError(f"guide {cfg.guide!r} trains with its own ELBO estimator: it supports "
                              f"objective='elbo' with anneal='none' and free_bits=0, not "
                              f"objective={cfg.objective!r}, anneal={cfg.anneal!r}, free_bits={cfg.free_bits!r}")
        self.num_particles = cfg.num_particles

    def elbo(self, model, guide, x) -> torch.Tensor:
        return guide.elbo(model, x, self.num_particles)


def make_objective(cfg, guide):
    """The objective object (``loss_and_grads(model, guide, x)``) for a ``TrainConfig``."""
    if guide.custom_elbo:
        return CustomELBO(cfg, guide)
    if cfg.free_bits:
        return FreeBitsELBO(cfg.free_bits, cfg.num_particles)
    if cfg.objective == "iwae":
        return RenyiELBO(alpha=0, num_particles=cfg.num_particles, vectorize_particles=True,
                         max_plate_nesting=1)
    cls = Trace_ELBO if cfg.objective == "elbo" else TraceMeanField_ELBO
    return cls(num_particles=cfg.num_particles, vectorize_particles=True, max_plate_nesting=1)
