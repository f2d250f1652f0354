r"""Training objectives: subclasses of Pyro's ELBO classes, annealing through poutine scales, free bits.

Every objective is a :class:`pyro.infer.ELBO` and implements Pyro's three entry points consistently:
``differentiable_loss(model, guide, x)`` (the minibatch *sum* of per-datapoint losses, a tensor to
back-propagate), ``loss`` (its value, a float) and ``loss_and_grads`` (back-propagates it, returns
the float). :func:`pyro_vaegap.training.train` uses them in Pyro's module-local idiom: ``objective(model,
guide)`` is a :class:`pyro.infer.elbo.ELBOModule`, and one ``torch.optim.Adam`` steps on
``loss_fn(x) / B``. :class:`pyro.infer.SVI` is not used because it collects the parameters to optimize
from Pyro's global parameter store, and this package keeps :class:`~pyro.nn.PyroModule` parameters
module-local (see :mod:`pyro_vaegap`). Training traces ``loss_fn`` once per batch shape
(:class:`~pyro_vaegap.training.traced.TracedLoss`; an annealing factor enters that graph as a tensor,
:meth:`Annealing.tensor_factor`); ``docs/benchmarks.md`` times both against a hand-written PyTorch step.

Objectives (``TrainConfig.objective``):

* ``"elbo"`` — :class:`pyro.infer.Trace_ELBO`, MC estimate of
  :math:`\mathbb E_q[\log p(x,z) - \log q(z\mid x)]`;
* ``"mean_field"`` — :class:`MeanFieldELBO`, Pyro's :class:`~pyro.infer.TraceMeanField_ELBO` (analytic
  KL where available) made correct under entropy annealing;
* ``"iwae"`` — :class:`IWAE`, Pyro's :class:`~pyro.infer.RenyiELBO` with :math:`\alpha = 0` and
  ``num_particles = k``, i.e. the IWAE bound :math:`\mathcal L_k` (Burda et al. 2016), with a
  ``differentiable_loss``;
* ``"infovae"`` — :class:`pyro_vaegap.objectives.infovae.InfoVAE`, the InfoVAE family of Zhao et al.
  (:math:`\alpha`, :math:`\lambda`, a divergence of the aggregate posterior from the prior: MMD, Stein,
  adversarial or the per-datapoint KL), with the ELBO, the :math:`\beta`-VAE and the AAE as special cases.

Annealing (``TrainConfig.anneal``, a factor rising linearly from 0 to 1; :class:`Annealing`):

* ``"entropy"`` (Cremer et al. 2018): maximize :math:`\mathbb E_q[\log p(x,z) - \lambda\log q(z\mid x)]`
  — every guide site's log-density is scaled by :math:`\lambda` (:class:`ScaleSites`);
* ``"kl"``: :math:`\mathbb E_q[\log p(x\mid z)] - \beta\,\mathrm{KL}` — the latent sites of model
  and guide are scaled by :math:`\beta`.

Free bits (``TrainConfig.free_bits`` = :math:`\alpha` bits, Kingma et al. 2016 in the per-datapoint,
per-dimension form of R. Yu's tutorial): :class:`FreeBitsELBO`. Guides with their own estimator
(``custom_elbo``, e.g. the mixture): :class:`CustomELBO`.
"""
from __future__ import annotations

import math
from contextlib import contextmanager

import torch
from pyro.distributions.util import is_identically_zero, scale_and_mask
from pyro.infer import RenyiELBO, Trace_ELBO, TraceMeanField_ELBO
from pyro.infer.util import (check_fully_reparametrized, get_dependent_plate_dims, is_validation_enabled,
                             torch_item, torch_sum)
from pyro.poutine.messenger import Messenger
from pyro.util import warn_if_nan
from torch.distributions import Independent, kl_divergence

from ..estimators.traces import guide_model_traces, sample_sites, site_log_prob, sum_log_prob
from ..utils import ConfigError, check_choice

LN2 = math.log(2.0)


class ScaleSites(Messenger):
    """Multiply the log-density of sample sites by ``factor`` (allowed to be 0, unlike poutine.scale).

    ``factor`` is read at every site, so one handler can be wrapped around a model once and its
    factor changed between calls (:class:`Annealing`).

    :param latent_only: scale only latent (non-observed) sites.
    """

    def __init__(self, factor: float = 1.0, latent_only: bool = False):
        super().__init__()
        self.factor, self.latent_only = float(factor), latent_only

    def _process_message(self, msg):
        if msg["type"] == "sample" and not (self.latent_only and msg["is_observed"]):
            msg["scale"] = msg["scale"] * self.factor


class Annealing:
    r"""``model`` and ``guide`` wrapped once in :class:`ScaleSites` handlers for annealing ``kind``.

    Use ``annealing.model`` and ``annealing.guide`` in place of the originals and set ``factor`` before
    each minibatch: ``"entropy"`` scales every guide site by it (:math:`\lambda`), ``"kl"`` every
    latent site of model and guide (:math:`\beta`), ``"none"`` leaves both unwrapped.
    """

    KINDS = ("none", "entropy", "kl")

    def __init__(self, kind: str, model, guide):
        self.kind = check_choice("anneal", kind, self.KINDS)
        self._guide_scale = ScaleSites()
        self._model_scale = ScaleSites(latent_only=True)
        self.model = self._model_scale(model) if kind == "kl" else model
        self.guide = guide if kind == "none" else self._guide_scale(guide)

    @property
    def factor(self) -> float:
        """The annealing factor applied at the next call (1: no annealing)."""
        return self._guide_scale.factor

    @factor.setter
    def factor(self, value: float) -> None:
        self._guide_scale.factor = self._model_scale.factor = float(value)

    @contextmanager
    def tensor_factor(self, value: torch.Tensor):
        """Within the context the factor is the 0-dim tensor ``value`` (site scales become tensors): a traced
        loss (:class:`~pyro_vaegap.training.traced.TracedLoss`) takes the factor as an input of its graph, where
        a Python float would be recorded as a constant. The float factor is restored on exit."""
        old = self.factor
        self._guide_scale.factor = self._model_scale.factor = value
        try:
            yield
        finally:
            self.factor = old


class _LossFromDifferentiable:
    """Pyro's ``loss`` and ``loss_and_grads`` for an ELBO defined by its ``differentiable_loss``
    (as Pyro's own ``JitTraceMeanField_ELBO`` does)."""

    def loss(self, model, guide, *args, **kwargs) -> float:
        with torch.no_grad():
            loss = torch_item(self.differentiable_loss(model, guide, *args, **kwargs))
        warn_if_nan(loss, "loss")
        return loss

    def loss_and_grads(self, model, guide, *args, **kwargs) -> float:
        loss = self.differentiable_loss(model, guide, *args, **kwargs)
        loss.backward(retain_graph=self.retain_graph)
        loss = torch_item(loss)
        warn_if_nan(loss, "loss")
        return loss


class MeanFieldELBO(TraceMeanField_ELBO):
    r""":class:`~pyro.infer.TraceMeanField_ELBO` that stays correct when model and guide sites carry
    different scales (entropy annealing).

    A latent site with model scale :math:`s_p` and guide scale :math:`s_q` (``msg["scale"]``: plate
    subsampling :math:`N/B` times any :class:`ScaleSites` factor) contributes

    .. math::

        s_p\,\mathbb E_q[\log p(z)] - s_q\,\mathbb E_q[\log q(z)]
        = -s_p\,\mathrm{KL}(q\,\Vert\,p) - (s_p - s_q)\,\mathrm H[q].

    Pyro's class uses :math:`-s_q\,\mathrm{KL}` for it, which is right only when :math:`s_p = s_q`
    (no annealing, KL annealing, subsampling alone); under entropy annealing (:math:`s_q = \lambda s_p`)
    it would silently optimize the KL-annealed :math:`\mathbb E_q[\log p(x\mid z)] - \lambda\mathrm{KL}`
    instead of :math:`\mathbb E_q[\log p(x,z)] + \lambda\mathrm H[q]` (lower by
    :math:`(1-\lambda)\,\mathbb E_q[\log p(z)]`). Here KL and entropy are analytic
    where ``kl_divergence`` and ``entropy()`` exist (torch's ``Normal``; ``Independent`` sums them
    over the event), masked by the guide site's mask as Pyro masks the KL; otherwise the site falls back
    to the single-sample estimate :math:`s_p\log p(z) - s_q\log q(z)`. Observed sites enter as
    :math:`s\log p(x\mid z)`, guide-only auxiliary sites as :math:`-s_q\log q`, as in Pyro.
    """

    def _differentiable_loss_particle(self, model_trace, guide_trace):
        elbo = 0.0
        for name, p_site in model_trace.nodes.items():
            if p_site["type"] != "sample":
                continue
            if p_site["is_observed"]:
                elbo = elbo + p_site["log_prob_sum"]
                continue
            q_site = guide_trace.nodes[name]
            if is_validation_enabled():
                check_fully_reparametrized(q_site)
            elbo = elbo + self._latent_term(p_site, q_site)
        for name, q_site in guide_trace.nodes.items():
            if q_site["type"] == "sample" and name not in model_trace.nodes:  # auxiliary
                if is_validation_enabled():
                    check_fully_reparametrized(q_site)
                elbo = elbo - q_site["score_parts"].entropy_term.sum()
        return -torch_item(elbo), -elbo

    @staticmethod
    def _latent_term(p_site, q_site):
        r""":math:`-s_p\mathrm{KL} - (s_p - s_q)\mathrm H` summed over the site, or its MC fallback."""
        q, p = q_site["fn"], p_site["fn"]
        dscale = p_site["scale"] - q_site["scale"]
        try:
            kl = kl_divergence(q, p)
            # the entropy is needed only when the scales differ: an unneeded missing entropy() must
            # not push the site off its analytic KL
            entropy = 0.0 if is_identically_zero(dscale) else q.entropy()
        except NotImplementedError:
            return p_site["log_prob_sum"] - q_site["score_parts"].entropy_term.sum()
        kl = scale_and_mask(kl, scale=p_site["scale"], mask=q_site["mask"])
        entropy = scale_and_mask(entropy, scale=dscale, mask=q_site["mask"])
        return -(kl + entropy).sum()


class IWAE(_LossFromDifferentiable, RenyiELBO):
    r"""The IWAE bound :math:`\mathcal L_k` (Burda et al. 2016): Pyro's :class:`~pyro.infer.RenyiELBO`
    with :math:`\alpha = 0`, ``k`` vectorized particles, and a ``differentiable_loss``

    .. math::

        -\sum_n \Big[\operatorname{logsumexp}_{j=1}^{k} \log w_{jn} - \log k\Big],\qquad
        \log w_{jn} = \sum_{\text{model sites}} s\log p - \sum_{\text{guide sites}} s\log q,

    read from the traces as Pyro's ``RenyiELBO.loss`` reads them, so its value is that loss (site
    log-densities with their scales: KL annealing scales the latent terms inside each
    :math:`\log w`). Its gradient is the pathwise IWAE gradient, :math:`\sum_j \tilde w_{jn}\nabla\log w_{jn}`
    with normalized weights :math:`\tilde w`, so only fully reparameterized guides are accepted.
    """

    def __init__(self, num_particles: int):
        super().__init__(alpha=0, num_particles=num_particles, vectorize_particles=True, max_plate_nesting=1)

    def log_weights(self, model, guide, *args, **kwargs) -> torch.Tensor:
        r""":math:`\log w`, shape ``(k, N)``, differentiable."""
        (model_trace, guide_trace), = self._get_traces(model, guide, args, kwargs)
        sum_dims = get_dependent_plate_dims(model_trace.nodes.values())
        log_w = 0.0
        for name, site in model_trace.nodes.items():
            if site["type"] == "sample":
                log_w = log_w + torch_sum(site["log_prob"], sum_dims)
        for name, site in guide_trace.nodes.items():
            if site["type"] == "sample":
                if not is_identically_zero(site["score_parts"].score_function):
                    raise ConfigError(f"objective='iwae' takes pathwise gradients: guide site {name!r} "
                                      f"({type(site['fn']).__name__}) is not reparameterized")
                log_w = log_w - torch_sum(site["log_prob"], sum_dims)
        return log_w.reshape(self.num_particles, -1)

    def differentiable_loss(self, model, guide, *args, **kwargs) -> torch.Tensor:
        r""":math:`-\sum_n[\operatorname{logsumexp}_j \log w_{jn} - \log k]`, a scalar tensor."""
        log_w = self.log_weights(model, guide, *args, **kwargs)
        loss = -(torch.logsumexp(log_w, 0) - math.log(self.num_particles)).sum()
        warn_if_nan(loss, "loss")
        return loss


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


class FreeBitsELBO(_LossFromDifferentiable, Trace_ELBO):
    r"""The free-bits objective, a :class:`~pyro.infer.Trace_ELBO` whose per-site KL terms are held up.

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
    the traces as every estimator here reads it (site scales are not applied: free bits is refused
    with annealing, and the bound is per datapoint).

    ``differentiable_loss(model, guide, x)`` is :math:`-\sum_n \mathcal L_\lambda(x_n)`, each
    :math:`\mathcal L_\lambda` the mean over ``num_particles`` vectorized draws.

    :param free_bits: :math:`\alpha`, in bits per latent dimension (the tutorial uses 0.05).
    :param num_particles: samples of :math:`z` per datapoint (vectorized).
    """

    def __init__(self, free_bits: float, num_particles: int = 1):
        if not (math.isfinite(free_bits) and free_bits > 0):
            raise ConfigError(f"free_bits={free_bits!r} is not allowed: expected a positive number of bits")
        super().__init__(num_particles=num_particles, vectorize_particles=True, max_plate_nesting=1)
        self.free_nats = float(free_bits) * LN2

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

    def differentiable_loss(self, model, guide, x) -> torch.Tensor:
        r""":math:`-\sum_n \mathcal L_\lambda(x_n)`, a scalar tensor."""
        return -self.elbo(model, guide, x).sum()


class CustomELBO(_LossFromDifferentiable, Trace_ELBO):
    r"""The objective of a guide with ``custom_elbo`` (see :meth:`pyro_vaegap.contract.guide.Guide.elbo`):
    ``differentiable_loss(model, guide, x)`` is :math:`-\sum_n` ``guide.elbo(model, x, num_particles)[n]``.

    The estimator is the one of the guide this objective was built for (kept as ``self.guide``):
    Pyro passes the guide callable along, which for other objectives may be an annealing wrapper,
    so it is not relied on; a *different* guide module is refused. Only ``objective="elbo"`` without
    annealing or free bits is defined for such guides (those scale or read Pyro sites, which a custom
    estimator does not expose); anything else is refused rather than ignored.
    """

    def __init__(self, cfg, guide):
        if cfg.objective != "elbo" or cfg.anneal != "none" or cfg.free_bits:
            raise ConfigError(f"guide {cfg.guide!r} trains with its own ELBO estimator: it supports "
                              f"objective='elbo' with anneal='none' and free_bits=0, not "
                              f"objective={cfg.objective!r}, anneal={cfg.anneal!r}, free_bits={cfg.free_bits!r}")
        super().__init__(num_particles=cfg.num_particles)
        self.guide = guide

    def differentiable_loss(self, model, guide, x) -> torch.Tensor:
        """``-guide.elbo(model, x, num_particles).sum()`` of the guide this objective was built for."""
        if isinstance(guide, torch.nn.Module) and guide is not self.guide:
            raise ConfigError(f"this CustomELBO was built for guide {type(self.guide).__name__} "
                              f"(id {id(self.guide)}), not for the {type(guide).__name__} it was given")
        return -self.guide.elbo(model, x, self.num_particles).sum()


def make_objective(cfg, guide):
    """The :class:`pyro.infer.ELBO` for a ``TrainConfig`` and its ``guide`` (validated here)."""
    if cfg.objective == "infovae":  # handles guides with their own estimator itself (their strata)
        from .infovae import InfoVAE
        return InfoVAE.from_config(cfg, guide)
    if guide.custom_elbo:
        return CustomELBO(cfg, guide)
    if cfg.free_bits:
        return FreeBitsELBO(cfg.free_bits, cfg.num_particles)
    if cfg.objective == "iwae":
        return IWAE(cfg.num_particles)
    cls = Trace_ELBO if cfg.objective == "elbo" else MeanFieldELBO
    return cls(num_particles=cfg.num_particles, vectorize_particles=True, max_plate_nesting=1)
