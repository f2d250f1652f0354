r"""The guide contract and the registry of posterior families.

A *family* (FFG, full covariance, flows, …) is registered under a name with up to two guide classes:

* an **amortized** guide ``A(model, **options)``: an encoder network mapping ``x`` to the parameters
  of :math:`q_\phi(z\mid x)`;
* a **per-datum (local)** guide ``L(model, num_data, **options)``: free parameters for each of
  ``num_data`` datapoints — the family's :math:`q^*` is found by optimizing them
  (:func:`pyro_vaegap.local.optimize_local`).

What a guide must provide, in one place
---------------------------------------
(a) **Training with SVI.** ``guide(x, idx=None, num_data=None)`` is a Pyro guide with the model's
    signature. Inside :func:`pyro_vaegap.models.data_plate` it samples every latent site of the model
    (``"z"`` for the models in :mod:`pyro_vaegap.models`) with reparameterized distributions, so
    ``Trace_ELBO`` / ``TraceMeanField_ELBO`` / ``RenyiELBO`` take pathwise gradients.

(b) **Scoring.** Estimators run the guide under an outer ``pyro.plate(..., dim=-2)`` of ``S``
    samples and read :math:`\log q(z\mid x)` off its trace as the sum of the log-densities of all its
    sites, each of batch shape ``(S, B)``. So the guide must broadcast over a leading sample dimension
    and must not draw anything outside the data plate. Auxiliary-variable families (Cremer et al.
    2018, eqs. 7–8) sample their auxiliary ``v`` at sites marked ``infer={"is_auxiliary": True}`` and
    add the reverse model as ``pyro.factor(name, -log r(v|x,z), has_rsample=True)``: the trace sum is
    then :math:`\log q(z,v\mid x) - \log r(v\mid x,z)`, every Pyro ELBO optimizes the auxiliary bound,
    and importance weights built from it stay valid lower bounds of :math:`\log p(x)`.

(c) **Local optimization.** A :class:`LocalGuide` owns parameters whose leading dimension is
    ``num_data`` (row ``n`` belongs to datapoint ``n``; ``idx`` selects rows) and lists them in
    :meth:`LocalGuide.local_parameters`. Because row ``n`` influences only datapoint ``n``'s bound, all
    datapoints are optimized as one batched problem. It may implement
    :meth:`LocalGuide.init_from_amortized` to start from an encoder's output.

:func:`check_guide` tests (a)–(c) on a small batch; run it on any new guide.

Registering a family
--------------------
Put a module in the top-level ``guides`` package (``guides/my_family.py``) that calls::

    register_family("my_family", amortized=MyEncoderGuide, local=MyLocalGuide,
                    description="one line for --help")

:func:`get_family` imports every module of ``guides`` on first use, so ``vaegap train --guide
my_family`` and the gap report find it without any other edit.
"""
from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass

import torch
from pyro.nn import PyroModule

from .utils import ConfigError


class Guide(PyroModule):
    """Base class of every guide. ``forward(x, idx=None, num_data=None)`` is the Pyro guide."""

    #: whether the guide maps x to q(z|x) with shared weights (True) or owns per-datapoint parameters
    amortized: bool = True

    def __init__(self, model):
        super().__init__()
        self.latent_dim = model.latent_dim
        self.data_dim = model.data_dim

    def forward(self, x, idx=None, num_data=None):  # pragma: no cover - abstract
        raise NotImplementedError

    #: True when the family must be trained through :meth:`elbo` rather than Pyro's ELBO objects
    #: (see :meth:`elbo`); ``train`` and ``optimize_local`` honour it, estimators never need it.
    custom_elbo: bool = False

    def elbo(self, model, x: torch.Tensor, num_samples: int, idx=None) -> torch.Tensor:
        r"""Differentiable estimate of the guide's training bound for each row of ``x``: shape ``(N,)``.

        Default: the plain Monte Carlo ELBO, the mean over ``num_samples`` draws of
        :func:`pyro_vaegap.traces.log_weights`. A family whose reparameterized draws alone do not give
        unbiased gradients of a valid bound (e.g. a mixture, whose component choice is discrete)
        overrides this with an estimator that does (e.g. stratified over components) and sets
        ``custom_elbo = True``. The override must be an unbiased estimate of
        :math:`\mathbb E_q[\log p(x,z) - \log q(z\mid x)]` with ``log q`` the trace's log-density, so
        the scoring contract (b) and every estimator stay unchanged.
        """
        from .traces import log_weights

        return log_weights(model, self, x, num_samples, idx).mean(0)


class LocalGuide(Guide):
    """A per-datum guide: parameters with a leading dimension of size ``num_data``."""

    amortized = False

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


@dataclass(frozen=True)
class Family:
    """A registered posterior family."""

    name: str
    amortized: type | None
    local: type | None
    description: str = ""

    def make_amortized(self, model, **options) -> Guide:
        if self.amortized is None:
            raise ConfigError(f"family {self.name!r} has no amortized guide")
        return self.amortized(model, **options)

    def make_local(self, model, num_data: int, **options) -> LocalGuide:
        if self.local is None:
            raise ConfigError(f"family {self.name!r} has no per-datum guide to optimize locally")
        return self.local(model, num_data, **options)


_FAMILIES: dict[str, Family] = {}
_PLUGINS_LOADED = False


def register_family(name: str, *, amortized: type | None = None, local: type | None = None,
                    description: str = "") -> Family:
    """Register a family under ``name`` (re-registering the same name replaces it)."""
    if amortized is None and local is None:
        raise ConfigError(f"family {name!r} needs an amortized or a local guide class")
    for cls, kind in ((amortized, Guide), (local, LocalGuide)):
        if cls is not None and not issubclass(cls, kind):
            raise ConfigError(f"{cls.__name__} must subclass pyro_vaegap.guide.{kind.__name__}")
    fam = Family(name, amortized, local, description)
    _FAMILIES[name] = fam
    return fam


def load_plugins() -> None:
    """Import every module of the ``guides`` package once, so that each registers its family."""
    global _PLUGINS_LOADED
    if _PLUGINS_LOADED:
        return
    import guides

    for info in pkgutil.iter_modules(guides.__path__):
        try:
            importlib.import_module(f"guides.{info.name}")
        except Exception as e:  # a broken user file must say which file it is
            raise ImportError(f"could not import guide module guides/{info.name}.py: {e}") from e
    _PLUGINS_LOADED = True


def families() -> dict[str, Family]:
    """All registered families by name (plugins loaded)."""
    load_plugins()
    return dict(_FAMILIES)


def get_family(name: str) -> Family:
    """The family registered as ``name``; a clear error lists the known names otherwise."""
    fams = families()
    if name not in fams:
        raise ConfigError(f"unknown guide family {name!r}: choose one of {sorted(fams)}")
    return fams[name]


def check_guide(model, guide, x: torch.Tensor, num_samples: int = 3) -> None:
    """Check the contract on a small batch ``x``; raise ``ConfigError`` saying what is wrong.

    Checks: the guide samples exactly the model's latent sites (plus auxiliary ones), every site is
    reparameterized, every log-density has batch shape ``(S, B)`` under an outer sample plate, and
    the importance log-weights are finite.
    """
    from .traces import guide_model_traces, sample_sites, sum_log_prob

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
