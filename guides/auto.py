r"""Pyro's autoguides as per-datum families: :math:`q^*` of Cremer et al. (2018) for the autoguide's family.

An autoguide fitted to a model's whole data set is one guide over all datapoints' latents. For the gap report
the family :math:`\mathcal Q` must be a set of distributions over *one datapoint's* latents, and :math:`q^*`
its per-datapoint optimum; the per-datum version of an autoguide is that family, with its parameters
repeated for every datapoint (leading dimension ``num_data``) and the datapoints optimized as one batched
problem (:func:`pyro_vaegap.estimators.local.optimize_local`). Latent sites, shapes and supports are the model's (read
from its trace, :mod:`pyro_vaegap.contract`); as in Pyro, each datapoint's latents are concatenated into one
unconstrained vector :math:`u` (:meth:`~pyro_vaegap.contract.guide.Guide.sample_latents`) and mapped onto each site's
support by ``biject_to``.

* ``auto_normal`` — Pyro's own ``AutoNormal`` over the data plate, whose parameters are already one row per
  datapoint: the family is the fully factorized Gaussian (on the unconstrained latents), its :math:`q^*` the
  FFG optimum;
* ``auto_mvn`` — ``AutoMultivariateNormal``: :math:`\mathcal N(\mu, (\sigma\odot L)(\sigma\odot L)^\top)` with
  :math:`L` unit lower triangular (Pyro's parameterization);
* ``auto_lowrank`` — ``AutoLowRankMultivariateNormal``: :math:`\mathcal N(\mu, D_\sigma (W W^\top + I) D_\sigma)`,
  Pyro's ``LowRankMultivariateNormal(loc, W·σ, σ²)``, rank :math:`\mathrm{round}(\sqrt D)` by default;
* ``auto_iaf`` — ``AutoIAFNormal``: :math:`\mathcal N(0, I)` pushed through ``num_transforms`` affine
  autoregressive maps (MADE with ``[3D + 1]`` hidden units).

Refused, with the reason (:data:`REFUSED_FAMILIES`): ``auto_delta`` (``AutoDelta``, MAP). A point mass has
no density with respect to Lebesgue measure, so its ELBO is :math:`-\infty`; the value :math:`\log p(x,\hat z)`
it would report is not a lower bound of :math:`\log p(x)`, and no approximation or amortization gap is defined.

Passing a Pyro autoguide *class* to :func:`~pyro_vaegap.contract.registry.register_family` (``local=AutoNormal``)
registers its per-datum version (:func:`per_datum_class`). A fitted autoguide *object* is accepted as the
amortized guide of :func:`~pyro_vaegap.report.compute.gap_report` when its parameters live inside the data plate
(``AutoNormal``); the joint autoguides draw one site for all datapoints and are refused there with that reason.

Differences from Pyro's classes, stated exactly: the per-datum ``auto_mvn``, ``auto_lowrank`` and ``auto_iaf``
start their means at :math:`u = 0` (Pyro: ``init_to_median`` of prior draws), and ``auto_iaf``'s MADE output
weights start at zero, so each datapoint's flow starts at the identity (Pyro: PyTorch's default initialization).
"""
from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch
from pyro.distributions.transforms import AffineAutoregressive
from pyro.infer.autoguide import (AutoDelta, AutoGuide, AutoIAFNormal, AutoLowRankMultivariateNormal,
                                  AutoMultivariateNormal, AutoNormal)
from pyro.infer.autoguide.utils import deep_setattr
from pyro.nn import PyroParam
from torch import nn
from pyro.distributions import constraints

from pyro_vaegap.contract.model import call, parameters_of
from pyro_vaegap.contract.guide import Family, LocalGuide, gaussian_output
from pyro_vaegap.utils import ConfigError, check_positive_int
from ._batched import BatchedMADE


class LocalAutoNormal(LocalGuide):
    """Pyro's :class:`~pyro.infer.autoguide.AutoNormal` itself, fitted per datapoint.

    ``AutoNormal`` keeps a location and a scale for every element of every latent site, inside the model's
    plates: over the data plate that is one row per datapoint. The prototype trace is taken on ``num_data``
    placeholder rows (only the model's prior and plate sizes are read from it); at each call the data plate is
    subsampled at the batch's rows, so the parameters of exactly those datapoints are used. Its draws are a
    Normal auxiliary site and a ``Delta`` per latent site, and rows never mix: the local optimizer may
    evaluate running rows only (``row_subsets``).
    """

    row_subsets = True

    def __init__(self, model, num_data: int, init_scale: float = 0.1):
        super().__init__(model, num_data)
        if not (isinstance(init_scale, (int, float)) and init_scale > 0):
            raise ConfigError(f"init_scale={init_scale!r} is not allowed: expected a positive number")
        self._rows = None
        self.auto = AutoNormal(lambda x: call(model, x), init_scale=float(init_scale), create_plates=self._plate)
        like = next(iter(parameters_of(model)), torch.zeros(()))  # the model's dtype and device
        placeholder = like.new_zeros((num_data, *self.spec.data_shape))
        with torch.no_grad(), pyro.poutine.block():
            self.auto._setup_prototype(placeholder)

    def _plate(self, *args, **kwargs):
        sub = None if self._rows is None or isinstance(self._rows, slice) else self._rows
        return pyro.plate(self.spec.plate, self.num_data, subsample=sub, dim=-1)

    def forward(self, x, idx=None, num_data=None):
        self._rows = self.rows(x, idx)
        try:
            out = self.auto(x)
        finally:
            self._rows = None
        return out

    @torch.no_grad()
    def init_from_amortized(self, guide, x):
        out = gaussian_output(guide, x, self.spec)
        if out is None or not all(s.real for s in self.spec.latents):
            raise ConfigError(f"auto_normal can start only from an encoder with Gaussian output on real-valued sites; "
                              f"got {getattr(guide, '__name__', type(guide).__name__)}")
        for site, loc, scale in zip(self.spec.latents, self.spec.split(out[0]).values(),
                                    self.spec.split(out[1]).values()):
            deep_setattr(self.auto.locs, site.name, PyroParam(loc.clone(), constraints.real,
                                                               len(site.event_shape)))
            deep_setattr(self.auto.scales, site.name, PyroParam(scale.clone(), self.auto.scale_constraint,
                                                                 len(site.event_shape)))


class _LocalJoint(LocalGuide):
    """Base of the per-datum joint autoguides: ``posterior(rows)`` is a distribution over the concatenated
    unconstrained latents ``(B, D)``; it is drawn at the model's sites by :meth:`sample_latents`."""

    def posterior(self, rows):  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, x, idx=None, num_data=None):
        q = self.posterior(self.rows(x, idx))
        with self.data_plate(x, idx, num_data):
            return self.sample_latents(q)


class LocalAutoMultivariateNormal(_LocalJoint):
    r"""Per-datum ``AutoMultivariateNormal``: ``loc`` ``(N, D)``, ``scale`` ``(N, D)`` (positive) and a unit lower
    triangular ``scale_tril`` ``(N, D, D)``; :math:`q = \mathcal N(\mu, \Sigma)` with Cholesky factor
    ``scale[..., None] * scale_tril``. The family holds every Gaussian, so on a linear-Gaussian model its
    :math:`q^*` is the exact posterior and its approximation gap is 0."""

    def __init__(self, model, num_data: int, init_scale: float = 0.1):
        super().__init__(model, num_data)
        D = self.latent_dim
        self.loc = PyroParam(torch.zeros(num_data, D))
        self.scale = PyroParam(torch.full((num_data, D), float(init_scale)), constraint=constraints.softplus_positive)
        self.scale_tril = PyroParam(torch.eye(D).expand(num_data, D, D).clone(),
                                    constraint=constraints.unit_lower_cholesky)

    def posterior(self, rows):
        return dist.MultivariateNormal(self.loc[rows], scale_tril=self.scale[rows][..., None] * self.scale_tril[rows])


class LocalAutoLowRankMultivariateNormal(_LocalJoint):
    r"""Per-datum ``AutoLowRankMultivariateNormal``: ``loc`` ``(N, D)``, ``scale`` ``(N, D)`` and ``cov_factor``
    ``(N, D, rank)``; :math:`q = \mathcal N(\mu, \mathrm{diag}(\sigma) (W W^\top + I) \mathrm{diag}(\sigma))`,
    Pyro's ``LowRankMultivariateNormal(loc, W·σ, σ²)``. ``rank`` defaults to :math:`\mathrm{round}(\sqrt D)`."""

    def __init__(self, model, num_data: int, rank: int | None = None, init_scale: float = 0.1):
        super().__init__(model, num_data)
        D = self.latent_dim
        self.rank = check_positive_int("rank", rank) if rank is not None else max(1, int(round(D ** 0.5)))
        self.loc = PyroParam(torch.zeros(num_data, D))
        self.scale = PyroParam(torch.full((num_data, D), 0.5 ** 0.5 * float(init_scale)),
                               constraint=constraints.softplus_positive)
        self.cov_factor = nn.Parameter(torch.randn(num_data, D, self.rank) / self.rank ** 0.5)

    def posterior(self, rows):
        scale = self.scale[rows]
        return dist.LowRankMultivariateNormal(self.loc[rows], self.cov_factor[rows] * scale[..., None], scale * scale)


class LocalAutoIAFNormal(_LocalJoint):
    r"""Per-datum ``AutoIAFNormal``: :math:`u = f_K\circ\dots\circ f_1(\epsilon)`, :math:`\epsilon\sim\mathcal N(0, I_D)`,
    each :math:`f_k` an affine autoregressive map whose MADE (hidden widths ``hidden_dim``, default
    ``[3D + 1]`` as Pyro's ``affine_autoregressive``) is free per datapoint
    (:class:`~pyro_vaegap.guides._batched.BatchedMADE`)."""

    def __init__(self, model, num_data: int, num_transforms: int = 1, hidden_dim: int | None = None):
        super().__init__(model, num_data)
        D = self.latent_dim
        K = check_positive_int("num_transforms", num_transforms)
        hidden = check_positive_int("hidden_dim", hidden_dim) if hidden_dim is not None else 3 * D + 1
        gen = torch.Generator().manual_seed(0)  # fixed orders: a chunk's guide is the same whatever the seed
        self.mades = nn.ModuleList(BatchedMADE(num_data, D, [max(hidden, D)], torch.randperm(D, generator=gen))
                                   for _ in range(K))
        self.register_buffer("zero", torch.zeros(()))

    def posterior(self, rows):
        B = self.num_data if isinstance(rows, slice) else len(rows)
        base = dist.Normal(self.zero.expand(B, self.latent_dim), 1.0).to_event(1)
        return dist.TransformedDistribution(base, [AffineAutoregressive(m.bind(rows)) for m in self.mades])


AUTO_NORMAL = Family("auto_normal", local=LocalAutoNormal,
                     description="Pyro's AutoNormal per datapoint (fully factorized Gaussian on the unconstrained latents)")
AUTO_MVN = Family("auto_mvn", local=LocalAutoMultivariateNormal,
                  description="Pyro's AutoMultivariateNormal per datapoint (full-covariance Gaussian)")
AUTO_LOWRANK = Family("auto_lowrank", local=LocalAutoLowRankMultivariateNormal,
                      description="Pyro's AutoLowRankMultivariateNormal per datapoint (low-rank plus diagonal covariance)")
AUTO_IAF = Family("auto_iaf", local=LocalAutoIAFNormal,
                  description="Pyro's AutoIAFNormal per datapoint (standard normal through affine autoregressive flows)")

_POINT_MASS = ("AutoDelta (MAP) is a point mass: it has no density, so its ELBO is -inf and log p(x, z_MAP) is not a "
               "lower bound of log p(x); no approximation or amortization gap is defined for it")

#: names (and Pyro classes) that are not families, with the reason; the registry reports it
REFUSED_FAMILIES = {"auto_delta": _POINT_MASS}

#: Pyro's autoguide classes and the per-datum guide each stands for
PER_DATUM = {AutoNormal: LocalAutoNormal, AutoMultivariateNormal: LocalAutoMultivariateNormal,
             AutoLowRankMultivariateNormal: LocalAutoLowRankMultivariateNormal, AutoIAFNormal: LocalAutoIAFNormal}


def per_datum_class(cls: type) -> type:
    """The per-datum guide class standing for Pyro's autoguide class ``cls`` (:data:`PER_DATUM`); a clear error
    with the reason for the others."""
    if cls in PER_DATUM:
        return PER_DATUM[cls]
    if issubclass(cls, AutoDelta):
        raise ConfigError(_POINT_MASS)
    raise ConfigError(f"{cls.__name__} has no per-datum version here; available: "
                      f"{sorted(c.__name__ for c in PER_DATUM)} (per-datum families need every parameter to be one "
                      "row per datapoint)")


assert all(issubclass(c, AutoGuide) for c in PER_DATUM)
