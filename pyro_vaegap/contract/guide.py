r"""The guide contract and the registry of posterior families.

A *family* (FFG, full covariance, flows, …) is registered under a name with up to two guide classes:

* an **amortized** guide ``A(model, **options)``: an encoder network mapping ``x`` to the parameters
  of :math:`q_\phi(z\mid x)`;
* a **per-datum (local)** guide ``L(model, num_data, **options)``: free parameters for each of
  ``num_data`` datapoints — the family's :math:`q^*` is found by optimizing them
  (:func:`pyro_vaegap.estimators.local.optimize_local`).

What a guide must provide, in one place
---------------------------------------
(a) **Training with SVI.** ``guide(x, idx=None, num_data=None)`` is a Pyro guide with the model's
    signature. Inside the model's data plate (:meth:`Guide.data_plate`) it samples every latent site of
    the model (``"z"`` for the models in :mod:`pyro_vaegap.models`; whatever a user's model draws, read
    from its trace into :attr:`Guide.spec`, :mod:`pyro_vaegap.contract`) with reparameterized
    distributions, so ``Trace_ELBO`` / ``TraceMeanField_ELBO`` / ``RenyiELBO`` take pathwise gradients.
    :meth:`Guide.sample_latents` places a distribution over the concatenated latents at the model's sites.

(b) **Scoring.** Estimators run the guide under an outer ``pyro.plate(..., dim=-2)`` of ``S``
    samples and read :math:`\log q(z\mid x)` off its trace as the sum of the log-densities of all its
    sites, each of batch shape ``(S, B)``. So the guide must broadcast over a leading sample dimension
    and must not draw anything outside the data plate. Auxiliary-variable families (Cremer et al.
    2018, eqs. 7–8) sample their auxiliary ``v`` at sites marked ``infer={"is_auxiliary": True}`` and
    add the reverse model as ``pyro.factor(name, -log r(v|x,z), has_rsample=True)``: the trace sum is
    then :math:`\log q(z,v\mid x) - \log r(v\mid x,z)`, every Pyro ELBO optimizes the auxiliary bound,
    and importance weights built from it stay valid lower bounds of :math:`\log p(x)`.

    A family whose training objective is not the ELBO of the trace's :math:`q(z\mid x)` (e.g. one
    with global latent variables of its own, such as the GP weights of ``gpvae``) trains through the
    :meth:`Guide.elbo` hook; estimators still score the trace's :math:`q(z\mid x)`.

(c) **Local optimization.** A :class:`LocalGuide` owns parameters whose leading dimension is
    ``num_data`` (row ``n`` belongs to datapoint ``n``; ``idx`` selects rows) and lists them in
    :meth:`LocalGuide.local_parameters`. Because row ``n`` influences only datapoint ``n``'s bound, all
    datapoints are optimized as one batched problem. It may implement
    :meth:`LocalGuide.init_from_amortized` to start from an encoder's output.

    **Opt-in: evaluating only the running datapoints.** A guide that sets
    ``row_subsets = True`` (:attr:`LocalGuide.row_subsets`) promises that (i) evaluated with
    ``idx``, its row ``b`` is exactly what the full evaluation gives for datapoint ``idx[b]`` (every
    parameter indexed with :meth:`LocalGuide.rows`, nothing shared across rows), and (ii) every draw is
    a reparameterized Normal site inside the data plate, possibly ``Independent``, expanded or pushed
    through a ``TransformedDistribution`` (or a deterministic ``Delta``). The local optimizer then
    evaluates the running rows only, with noise keyed by datapoint and step
    (:mod:`pyro_vaegap.estimators.keyed_noise`). Guides that do not opt in (the default) get the full evaluation
    of every row at every step.

:func:`check_guide` tests (a)–(c) on a small batch; run it on any new guide. The gap report checks every
guide against the model's trace (:func:`pyro_vaegap.contract.model.check_sites`) before computing anything.

A guide class's model is a library model (``latent_dim``/``data_dim``, site ``"z"``) or any model wrapped by
:func:`pyro_vaegap.contract.model.as_model` (``gap_report`` does it), whose :class:`~pyro_vaegap.contract.model.ModelSpec`
the guide reads.

Declaring a family
------------------
Put a module in ``guides/`` (installed as :mod:`pyro_vaegap.guides`) holding, at module level::

    FAMILY = Family("my_family", amortized=MyEncoderGuide, local=MyLocalGuide,
                    description="one line for --help")

The registry (:mod:`pyro_vaegap.contract.registry`) collects every module-level :class:`Family` of every
module there, and of every module named by a ``pyro_vaegap.guides`` entry point of an installed
distribution, on first use; ``vaegap train --guide my_family`` and the gap report find it without
any other edit.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass

import pyro
import pyro.distributions as dist
import torch
from pyro.distributions.util import sum_rightmost
from pyro.nn import PyroModule
from torch.distributions import biject_to

from .model import ModelSpec, spec_of
from ..utils import ConfigError


class Guide(PyroModule):
    """Base class of every guide. ``forward(x, idx=None, num_data=None)`` is the Pyro guide."""

    #: whether the guide maps x to q(z|x) with shared weights (True) or owns per-datapoint parameters
    amortized: bool = True

    def __init__(self, model):
        super().__init__()
        spec = spec_of(model)
        #: the model's latent sites, data plate and data shape (:class:`~pyro_vaegap.contract.model.ModelSpec`)
        self.spec: ModelSpec = spec
        #: size of one datapoint's latents, every latent site flattened and concatenated
        self.latent_dim = spec.latent_dim
        #: size of one flattened row of the data
        self.data_dim = spec.data_dim

    def forward(self, x, idx=None, num_data=None):  # pragma: no cover - abstract
        raise NotImplementedError

    def data_plate(self, x, idx=None, num_data=None):
        """The model's data plate (its name read from the model's trace), over the rows of ``x``."""
        from ..models import data_plate

        return data_plate(x, idx, num_data, name=self.spec.plate)

    def sample_latents(self, fn):
        r"""Draw one datapoint's latents at the model's latent sites from ``fn``, a distribution over the
        concatenated vector of size :attr:`latent_dim` (one event dimension); call inside :meth:`data_plate`.

        One real-valued site of shape ``(latent_dim,)`` (the library's models: ``"z"``) is drawn from ``fn``
        directly. Otherwise, as Pyro's ``AutoContinuous`` guides do, the vector :math:`u` is an auxiliary site
        and each latent site is the ``Delta`` at :math:`T(u_{	ext{site}})`, :math:`T` the bijection from the
        reals onto the site's support, with log-density :math:`-\log|\det DT|`: the trace's sum is then
        :math:`\log q(z\mid x)` of the constrained latents. Returns :math:`u`.
        """
        sites = self.spec.latents
        if len(sites) == 1 and sites[0].real and sites[0].event_shape == (self.latent_dim,):
            return pyro.sample(sites[0].name, fn)
        u = pyro.sample("_latents", fn, infer={"is_auxiliary": True})
        for site, part in zip(sites, self.spec.split(u).values()):
            t = biject_to(site.support)
            value = t(part)
            ldj = t.log_abs_det_jacobian(part, value)
            ldj = sum_rightmost(ldj, ldj.dim() - value.dim() + len(site.event_shape))
            pyro.sample(site.name, dist.Delta(value, log_density=-ldj, event_dim=len(site.event_shape)))
        return u

    def latent_values(self, u: torch.Tensor) -> dict:
        """``{site: value}`` of the model's latent sites from a concatenated unconstrained vector ``u``
        (``(..., latent_dim)``), as :meth:`sample_latents` maps it (for families that condition the model)."""
        return {s.name: biject_to(s.support)(v) for s, v in zip(self.spec.latents, self.spec.split(u).values())}

    #: True when the family must be trained through :meth:`elbo` rather than Pyro's ELBO objects
    #: (see :meth:`elbo`); ``train`` and ``optimize_local`` honour it, estimators never need it.
    custom_elbo: bool = False

    def elbo(self, model, x: torch.Tensor, num_samples: int, idx=None) -> torch.Tensor:
        r"""Differentiable estimate of the guide's training bound for each row of ``x``: shape ``(N,)``.

        Default: the plain Monte Carlo ELBO, the mean over ``num_samples`` draws of
        :func:`pyro_vaegap.estimators.traces.log_weights`. A family whose reparameterized draws alone do not give
        unbiased gradients of a valid bound (e.g. a mixture, whose component choice is discrete)
        overrides this with an estimator that does (e.g. stratified over components) and sets
        ``custom_elbo = True``. The override must be an unbiased estimate of
        :math:`\mathbb E_q[\log p(x,z) - \log q(z\mid x)]` with ``log q`` the trace's log-density, so
        the scoring contract (b) and every estimator stay unchanged.

        A family whose *training objective* is defined otherwise — one with global latent variables of
        its own, such as the GP weights of ``gpvae``, whose objective adds their KL divergence weighted
        by :math:`1/N` (:meth:`set_training_size`) — returns that objective per datapoint here instead.
        Estimators never call this method: they score the trace's :math:`q(z\mid x)`, so the bounds
        and gaps they report are those of the guide's :math:`q(z\mid x)` whatever it was trained on.
        """
        from ..estimators.traces import log_weights

        return log_weights(model, self, x, num_samples, idx).mean(0)

    def set_training_size(self, num_data: int) -> None:
        """Told the size ``N`` of the training set by :func:`pyro_vaegap.train.train` before the first step.

        Nothing by default. A family with global latent variables of its own (shared by all datapoints)
        needs it for its per-datapoint objective (:meth:`elbo`): their KL divergence enters the
        objective of the whole set once, i.e. weighted by ``1/N`` per datapoint.
        """


class LocalGuide(Guide):
    """A per-datum guide: parameters with a leading dimension of size ``num_data``."""

    amortized = False

    #: whether the local optimizer may evaluate a subset of rows with keyed Normal noise (the
    #: opt-in of contract (c) above); False: every row is evaluated at every step
    row_subsets: bool = False

    def __init__(self, model, num_data: int):
        super().__init__(model)
        self.num_data = int(num_data)

    def rows(self, x, idx):
        """What selects the batch's rows of every ``(num_data, ...)`` parameter: ``idx``, or the
        whole-set slice when ``idx`` is None (a view: indexing a large per-datum network with
        ``arange(N)`` would copy all its weights at every step)."""
        if idx is None:
            if x.shape[0] != self.num_data:
                raise ConfigError(
                    f"a per-datum guide for {self.num_data} datapoints got a batch of {x.shape[0]} "
                    "without idx; pass the batch's global indices"
                )
            return slice(None)
        return idx

    def local_parameters(self) -> dict[str, torch.nn.Parameter]:
        """Every unconstrained parameter, each of shape ``(num_data, ...)``; override to restrict."""
        return dict(self.named_parameters())

    def init_from_amortized(self, guide: Guide, x: torch.Tensor) -> None:
        """Start from an amortized guide's output for ``x`` (optional for a family)."""
        raise NotImplementedError(f"{type(self).__name__} cannot be initialized from an encoder")


def gaussian_output(guide, x: torch.Tensor, spec: ModelSpec):
    """``(loc, scale)``, each ``(B, latent_dim)``, of an amortized guide's diagonal Gaussian for the rows of ``x``:
    ``guide.encode(x)`` when the guide has that hook, otherwise read from one trace of the guide, whose latent
    sites must then be (``Independent``) ``Normal`` draws on the reals. None when neither applies."""
    if hasattr(guide, "encode"):
        out = guide.encode(x)
        return (out[0], out[1]) if out[1].shape == out[0].shape else None
    from pyro import poutine

    from .model import call, quiet_frozen_modules

    with torch.no_grad(), poutine.block(), quiet_frozen_modules():
        tr = poutine.trace(call).get_trace(guide, x)
    locs, scales = [], []
    for site in spec.latents:
        fn = tr.nodes[site.name]["fn"] if site.name in tr.nodes else None
        while isinstance(fn, (dist.Independent, torch.distributions.Independent)):
            fn = fn.base_dist
        if not isinstance(fn, torch.distributions.Normal) or not site.real:
            return None
        shape = (x.shape[0], *site.event_shape)
        locs.append(fn.loc.expand(shape).reshape(x.shape[0], -1))
        scales.append(fn.scale.expand(shape).reshape(x.shape[0], -1))
    return torch.cat(locs, -1), torch.cat(scales, -1)


@dataclass(frozen=True)
class Family:
    """A posterior family: its name, its amortized and per-datum guide classes, a one-line description.

    A module in ``guides/`` (or a module named by an entry point, see :mod:`pyro_vaegap.contract.registry`)
    declares a family by holding a ``Family`` at module level; nothing else is needed.
    """

    name: str
    amortized: type | None = None
    local: type | None = None
    description: str = ""

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name.isidentifier():
            raise ConfigError(f"family name {self.name!r} is not allowed: expected a Python identifier")
        if self.amortized is None and self.local is None:
            raise ConfigError(f"family {self.name!r} needs an amortized or a local guide class")
        from pyro.infer.autoguide import AutoGuide

        if isinstance(self.amortized, type) and issubclass(self.amortized, AutoGuide):
            raise ConfigError(f"{self.amortized.__name__} is not an amortized guide (it has parameters per datapoint of "
                              f"the data it is fitted on): register it as local={self.amortized.__name__}")
        if isinstance(self.local, type) and issubclass(self.local, AutoGuide):
            from ..guides.auto import per_datum_class  # Pyro's autoguide class -> its per-datum version

            object.__setattr__(self, "local", per_datum_class(self.local))
        for cls, kind in ((self.amortized, Guide), (self.local, LocalGuide)):
            if cls is not None and not (isinstance(cls, type) and issubclass(cls, kind)):
                raise ConfigError(f"{getattr(cls, '__name__', cls)!r} must subclass pyro_vaegap.guide.{kind.__name__}")

    def make_amortized(self, model, **options) -> Guide:
        if self.amortized is None:
            raise ConfigError(f"family {self.name!r} has no amortized guide")
        return _construct(self.amortized, self.name, options, model)

    def make_local(self, model, num_data: int, **options) -> LocalGuide:
        if self.local is None:
            raise ConfigError(f"family {self.name!r} has no per-datum guide to optimize locally")
        return _construct(self.local, self.name, options, model, num_data)

    def takes_option(self, kind: str, name: str) -> bool:
        """Whether the ``kind`` (``"amortized"`` or ``"local"``) guide's constructor takes option ``name``."""
        cls = self.amortized if kind == "amortized" else self.local
        allowed = _keywords(cls) if cls is not None else set()
        return allowed is None or name in allowed

    def check_options(self, kind: str, options: dict) -> None:
        """Raise :class:`ConfigError` unless every key of ``options`` is a keyword of the ``kind``
        (``"amortized"`` or ``"local"``) guide's constructor (checked before any computation)."""
        cls = self.amortized if kind == "amortized" else self.local
        if cls is None:
            raise ConfigError(f"family {self.name!r} has no {kind} guide")
        allowed = _keywords(cls)
        unknown = sorted(set(options) - allowed) if allowed is not None else []
        if unknown:
            raise ConfigError(f"unknown option(s) {unknown} for the {kind} guide of family {self.name!r}; "
                              f"allowed: {sorted(allowed)}")


def _keywords(cls) -> set[str] | None:
    """Keyword arguments of ``cls.__init__`` after the positional model (and num_data); None if it
    takes ``**kwargs``."""
    params = list(inspect.signature(cls.__init__).parameters.values())[1:]
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return None
    skip = {"model", "num_data"}
    return {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name not in skip}


def _construct(cls, family: str, options: dict, *args):
    try:
        return cls(*args, **options)
    except TypeError as e:  # a misspelt option: say which family and what it takes
        allowed = _keywords(cls)
        raise ConfigError(f"bad options {options} for family {family!r} ({cls.__name__}): {e}"
                          + (f"; allowed: {sorted(allowed)}" if allowed is not None else "")) from e


def check_guide(model, guide, x: torch.Tensor, num_samples: int = 3) -> None:
    """Check the contract on a small batch ``x``; raise ``ConfigError`` saying what is wrong.

    Checks: the guide samples exactly the model's latent sites (plus auxiliary ones), every site is
    reparameterized, every log-density has batch shape ``(S, B)`` under an outer sample plate, and
    the importance log-weights are finite.
    """
    from ..estimators.traces import guide_model_traces, sample_sites, sum_log_prob

    with torch.no_grad():
        g, m = guide_model_traces(model, guide, x, num_samples)
    model_latents = {n for n, _ in sample_sites(m, observed=False)}
    guide_sites = dict(sample_sites(g))
    missing = model_latents - set(guide_sites)
    if missing:
        raise ConfigError(f"{type(guide).__name__} does not sample the model's latent sites {sorted(missing)}")
    for n, s in guide_sites.items():
        if s["is_observed"] and s["fn"].__class__.__name__ == "Unit":
            continue  # pyro.factor
        if not s["fn"].has_rsample:
            raise ConfigError(f"guide site {n!r} is not reparameterized (needs rsample)")
        aux = s["infer"].get("is_auxiliary", False)
        if n not in model_latents and not aux:
            raise ConfigError(f"guide site {n!r} is not in the model; mark it infer={{'is_auxiliary': True}}")
    B = x.shape[0]
    for tr, who in ((g, "guide"), (m, "model")):
        lp = sum_log_prob(tr, (num_samples, B))
        if not torch.isfinite(lp).all():
            raise ConfigError(f"the {who} trace has non-finite log-densities on this batch")
    if isinstance(guide, LocalGuide):
        for n, p in guide.local_parameters().items():
            if p.shape[:1] != (guide.num_data,):
                raise ConfigError(f"local parameter {n!r} has shape {tuple(p.shape)}; its leading "
                                  f"dimension must be num_data={guide.num_data}")
