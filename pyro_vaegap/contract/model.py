r"""The contract between the library and a user's Pyro model and guide: what is read from a trace, what is optional.

A **model** is any Pyro callable ``model(x)`` — a function, a bound method such as ``vae.model`` of Pyro's
VAE tutorial, or a :class:`~pyro.nn.PyroModule` — that

* draws its observed site(s) with ``obs=x`` (or a reshape of ``x``) inside a plate over the rows of ``x``
  (``pyro.plate(name, x.shape[0])``; any name, any dim that Pyro allocates), the **data plate**;
* draws its latent sites (any names, any number, any event shapes and supports) inside that plate, so
  datapoint ``n``'s latents are row ``n`` of each site. A latent outside the data plate (a global latent)
  has no per-datapoint posterior and is refused.

Everything else is read off a trace of the model on a few rows of the data (:func:`inspect_model`), as
Pyro's autoguides do: the data plate's name, the observed sites, and each latent site's name, event shape
and support (:class:`ModelSpec`). Estimators run the model under an extra outer plate of samples
(``dim=-2``), so its tensors must broadcast over a leading sample dimension (``x.new_zeros((x.shape[0], d))``
as the tutorial writes it does).

Optional hooks, provided by the library's own models (:mod:`pyro_vaegap.models`) and used when present:

* ``validate_data(x) -> x``: checks the data's values and shape (otherwise: any finite tensor);
* ``idx=None, num_data=None`` keywords of ``model``/``guide``: the batch's global row indices and the data
  set's size (minibatch training, per-datum guides); a callable without them is called as ``fn(x)``;
* ``guide.encode(x) -> (loc, scale)``: a Gaussian encoder's output, for ``local_init="encoder"``
  (otherwise read from a traced Normal site of the guide, when it has one per latent site);
* ``latent_dim`` / ``data_dim``: sizes (otherwise taken from the trace).

A **guide** is any Pyro callable ``guide(x)`` (an encoder, a trained :class:`~pyro.infer.autoguide.AutoNormal`,
a family of :mod:`pyro_vaegap.guides`). Before any estimator runs, :func:`check_sites` checks that it samples
exactly the model's latent sites (auxiliary sites marked ``infer={"is_auxiliary": True}`` aside), each inside
the data plate, with the model's event shapes and supports, and that its log-density splits over
datapoints; otherwise one line names the sites and what is wrong. A guide whose every draw is a point mass
(``AutoDelta``, MAP) is refused: :math:`q` has no density, so :math:`\mathcal L[q] = -\infty`.

A trained ``AutoNormal`` (or any autoguide whose parameters live inside the data plate) holds one row of
parameters per datapoint of the set it was fitted on; it is evaluated in any chunking by giving its data
plate the chunk's global indices as subsample (:func:`call`). Autoguides that draw one joint site for all
datapoints (``AutoMultivariateNormal``, ``AutoLowRankMultivariateNormal``, ``AutoIAFNormal``, …) do not
factor over datapoints and are refused as an evaluated guide; their per-datapoint versions are families
(:mod:`pyro_vaegap.guides.auto`).
"""
from __future__ import annotations

import functools
import inspect
import math
import warnings
from contextlib import contextmanager
from dataclasses import dataclass

import pyro
import torch
from pyro import poutine
from pyro.infer.autoguide import AutoContinuous, AutoGuide
from pyro.poutine.util import site_is_subsample
from torch import nn
from torch.distributions import constraints

from ..utils import ConfigError

#: Pyro's joint autoguides and their per-datapoint families (:mod:`pyro_vaegap.guides.auto`)
_JOINT_FAMILIES = {"AutoMultivariateNormal": "auto_mvn", "AutoLowRankMultivariateNormal": "auto_lowrank",
                   "AutoIAFNormal": "auto_iaf", "AutoDiagonalNormal": "auto_normal"}

#: the message of the warning ``pyro.module`` gives for every frozen parameter, on every call
_FROZEN_PARAM_WARNING = r".*was not registered in the param store because requires_grad=False"


# ----- calling a user's callable -----------------------------------------------------------------------

@functools.lru_cache(maxsize=256)
def _keywords(func) -> tuple[frozenset, bool]:
    try:
        params = inspect.signature(func).parameters.values()
    except (TypeError, ValueError):
        return frozenset(), True
    return (frozenset(p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)),
            any(p.kind is p.VAR_KEYWORD for p in params))


def takes(fn, name: str) -> bool:
    """Whether ``fn`` accepts the keyword ``name``."""
    target = fn.forward if isinstance(fn, nn.Module) else fn
    key = getattr(target, "__func__", target)  # a bound method's function (a new bound object per access)
    try:
        names, var = _keywords(key)
    except TypeError:  # unhashable callable
        names, var = _keywords.__wrapped__(key)
    return name in names or var


def call(fn, x, idx=None, num_data=None):
    """Run a model or guide on ``x``, passing ``idx`` / ``num_data`` only to a callable that takes them.

    A trained autoguide (:class:`~pyro.infer.autoguide.AutoGuide`) is run with its data plate subsampled
    at ``idx``, so its per-datapoint parameters are read for the rows of ``x`` whatever the chunk.
    ``pyro.module``'s warning for parameters with ``requires_grad=False`` (the estimators freeze the model)
    is silenced during the call.
    """
    with quiet_frozen_modules():  # a user's pyro.module on a frozen module would warn at every call
        if isinstance(fn, AutoGuide):
            return _call_autoguide(fn, x, idx)
        kw = {}
        if idx is not None and takes(fn, "idx"):
            kw["idx"] = idx
        if num_data is not None and takes(fn, "num_data"):
            kw["num_data"] = num_data
        return fn(x, **kw)


def _call_autoguide(guide, x, idx):
    if guide.prototype_trace is None:
        raise ConfigError(f"{type(guide).__name__} has not been fitted: run it (SVI) on the model before evaluating it")
    frames = [f for f in guide._prototype_frames.values() if f.vectorized]
    data = [f for f in frames if f.dim == -1] or frames
    if not data:  # no plate at all: nothing to subsample
        return guide(x)
    frame = data[0]
    full = frame.full_size or frame.size
    if idx is None:
        if x.shape[0] != full:
            raise ConfigError(f"{type(guide).__name__} was fitted on {full} datapoints but is evaluated on "
                              f"{x.shape[0]} without their indices")
        return guide(x)
    idx = torch.as_tensor(idx, device=x.device)
    if idx.numel() and int(idx.max()) >= full:
        raise ConfigError(f"{type(guide).__name__} was fitted on {full} datapoints; it has no parameters for row "
                          f"{int(idx.max())}: evaluate it on the data it was fitted on")
    saved = guide.create_plates
    guide.create_plates = lambda *a, **k: pyro.plate(frame.name, full, subsample=idx, dim=frame.dim)
    try:
        return guide(x)
    finally:
        guide.create_plates = saved


# ----- parameters of a callable --------------------------------------------------------------------------

def modules_of(fn) -> list[nn.Module]:
    """The ``nn.Module`` that owns ``fn``: itself, or the object of a bound method (``vae.model`` → ``vae``)."""
    for obj in (fn, getattr(fn, "__self__", None)):
        if isinstance(obj, nn.Module):
            return [obj]
    return []


def parameters_of(fn) -> list[torch.Tensor]:
    """Every parameter ``fn`` reads: its module's, or, for a plain function, those of Pyro's param store."""
    mods = modules_of(fn)
    if mods:
        return list(mods[0].parameters())
    store = pyro.get_param_store()
    return [store._params[k] for k in sorted(store.keys())]


def state_tensors(fn) -> list[torch.Tensor]:
    """The tensors that fix what ``fn`` computes (for fingerprints): its module's state or the param store's."""
    mods = modules_of(fn)
    if mods:
        return list(mods[0].state_dict().values())
    store = pyro.get_param_store()
    return [store._params[k] for k in sorted(store.keys())]


@contextmanager
def quiet_frozen_modules():
    """Silence ``pyro.module``'s warning for every parameter with ``requires_grad=False``: the estimators
    freeze the decoder on purpose, and a user's ``pyro.module`` call would repeat it at every model call."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_FROZEN_PARAM_WARNING, category=UserWarning)
        yield


# ----- what a trace of the model says --------------------------------------------------------------------

@dataclass(frozen=True)
class LatentSite:
    """A latent site of the model, per datapoint: its event shape and support."""

    name: str
    event_shape: tuple
    support: object

    @property
    def numel(self) -> int:
        return int(math.prod(self.event_shape))

    @property
    def real(self) -> bool:
        return _is_real(self.support)


@dataclass(frozen=True)
class ModelSpec:
    """What a trace of the model found: the data plate, the observed sites and the latent sites (in trace order)."""

    plate: str
    latents: tuple            #: :class:`LatentSite` in the order the model draws them
    observed: tuple           #: names of the observed sites
    data_shape: tuple         #: shape of one row of ``x``

    @property
    def latent_dim(self) -> int:
        """Size of one datapoint's latents, all sites flattened and concatenated."""
        return sum(s.numel for s in self.latents)

    @property
    def data_dim(self) -> int:
        return int(math.prod(self.data_shape))

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.latents]

    def split(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        """``{site: value}`` from the concatenated latents ``(..., latent_dim)``."""
        parts = flat.split([s.numel for s in self.latents], -1)
        return {s.name: p.reshape(*flat.shape[:-1], *s.event_shape) for s, p in zip(self.latents, parts)}

    def join(self, values: dict) -> torch.Tensor:
        """The inverse of :meth:`split`."""
        first = values[self.latents[0].name]
        batch = first.shape[:first.dim() - len(self.latents[0].event_shape)]
        return torch.cat([values[s.name].reshape(*batch, s.numel) for s in self.latents], -1)

    @classmethod
    def standard(cls, latent_dim: int, data_dim: int) -> "ModelSpec":
        """The library models' layout: one latent site ``"z"`` of shape ``(latent_dim,)`` in plate ``"data"``."""
        return cls("data", (LatentSite("z", (int(latent_dim),), constraints.real),), ("x",), (int(data_dim),))


def _is_real(support) -> bool:
    while isinstance(support, constraints.independent):
        support = support.base_constraint
    return support is constraints.real


def _support_text(support) -> str:
    return repr(_strip(support))


def _strip(c):
    while isinstance(c, constraints.independent):
        c = c.base_constraint
    return c


def _same_support(a, b) -> bool:
    a, b = _strip(a), _strip(b)
    return a is b or (type(a) is type(b) and repr(a) == repr(b))


def _sample_sites(trace):
    for name, site in trace.nodes.items():
        if site["type"] == "sample" and not site_is_subsample(site):
            yield name, site


def _is_factor(site) -> bool:
    return site["is_observed"] and type(site["fn"]).__name__ == "Unit"


def inspect_model(model, x: torch.Tensor, rows: int = 3) -> ModelSpec:
    """Trace ``model`` on the first ``rows`` rows of ``x`` and read its :class:`ModelSpec`; one clear error
    when it does not fit the contract (module docstring)."""
    B = min(int(x.shape[0]), rows)
    if B < 1:
        raise ConfigError("the data has no rows")
    with torch.no_grad(), quiet_frozen_modules():
        try:
            tr = poutine.trace(lambda xb: call(model, xb)).get_trace(x[:B])
        except ConfigError:
            raise
        except Exception as e:  # noqa: BLE001 - the user's code: say where it failed
            raise ConfigError(f"running the model on the data failed ({type(e).__name__}: {e}); the model must take "
                              f"the data as its first argument, as model(x)") from e
    sites = list(_sample_sites(tr))
    observed = [(n, s) for n, s in sites if s["is_observed"] and not _is_factor(s)]
    if not observed:
        raise ConfigError("the model has no observed site: draw the data with pyro.sample(name, ..., obs=x)")
    plates = None
    for _, s in observed:
        found = {f.name: f for f in s["cond_indep_stack"] if f.vectorized and f.size == B}
        plates = found if plates is None else {k: v for k, v in plates.items() if k in found}
    if not plates:
        raise ConfigError(f"the model's observed site(s) {[n for n, _ in observed]} are not inside a plate over the "
                          "rows of x: wrap them in pyro.plate(name, x.shape[0]) (the data plate)")
    plate = sorted(plates.values(), key=lambda f: -f.dim)[0].name  # the rightmost: -1 in the usual layout
    latents = []
    for name, s in sites:
        if s["is_observed"]:
            continue
        frames = [f.name for f in s["cond_indep_stack"] if f.vectorized]
        if plate not in frames:
            raise ConfigError(f"the model's latent site {name!r} is outside the data plate {plate!r}: a global latent "
                              "has no per-datapoint posterior, so no per-datapoint gap is defined")
        fn = s["fn"]
        if tuple(fn.batch_shape)[-1:] != (B,) or len(fn.batch_shape) != 1:
            raise ConfigError(f"the model's latent site {name!r} has batch shape {tuple(fn.batch_shape)} on a batch of "
                              f"{B}; expected ({B},): one draw per datapoint (use .to_event for the other dimensions)")
        latents.append(LatentSite(name, tuple(fn.event_shape), fn.support))
    if not latents:
        raise ConfigError("the model has no latent site: there is no posterior to approximate")
    return ModelSpec(plate, tuple(latents), tuple(n for n, _ in observed), tuple(x.shape[1:]))


def spec_of(model) -> ModelSpec:
    """The :class:`ModelSpec` a guide family builds its parameters for: ``model.spec`` (set by
    :func:`as_model`), or the library models' layout read from ``latent_dim`` / ``data_dim``."""
    spec = getattr(model, "spec", None)
    if isinstance(spec, ModelSpec):
        return spec
    if hasattr(model, "latent_dim") and hasattr(model, "data_dim"):
        return ModelSpec.standard(model.latent_dim, model.data_dim)
    raise ConfigError(f"{getattr(model, '__name__', type(model).__name__)} does not say its latent sites: wrap it "
                      "with pyro_vaegap.contract.as_model(model, x), which reads them from a trace on the data x")


class TracedModel(nn.Module):
    """A user's model callable with its :class:`ModelSpec` read from a trace: what the library's guide families,
    estimators and reports need, with nothing asked of the user's code. Calls go to the user's callable
    unchanged (``idx`` / ``num_data`` only if it takes them); the module owning a bound method is a submodule,
    so ``parameters()``, ``state_dict()`` and ``.to()`` are its."""

    def __init__(self, fn, spec: ModelSpec):
        super().__init__()
        self.fn = fn  # an nn.Module is registered as a submodule; a bound method's module is, below
        owner = getattr(fn, "__self__", None)
        self.owner = owner if isinstance(owner, nn.Module) and not isinstance(fn, nn.Module) else None
        self.spec = spec
        self.latent_dim, self.data_dim = spec.latent_dim, spec.data_dim
        # the user's global pyro.param / pyro.module statements get a param store of their own: a family that
        # runs the model inside its own PyroModule call (sa, gpvae, rme) would otherwise catch them in its
        # module-local store, which Pyro refuses; a copy of the global store keeps a plain function's params
        self._param_state = pyro.get_param_store().get_state()

    def forward(self, x, idx=None, num_data=None):
        with pyro.get_param_store().scope(state=self._param_state):
            return call(self.fn, x, idx, num_data)

    def validate_data(self, x):
        return validate_data(self.fn, x)


def as_model(model, x: torch.Tensor):
    """``model`` ready for the library: a library model (with ``spec`` or ``latent_dim``/``data_dim`` and an
    ``idx`` keyword) unchanged, anything else wrapped in :class:`TracedModel` with the spec read from ``x``."""
    if isinstance(model, TracedModel):
        return model
    if isinstance(model, nn.Module) and hasattr(model, "latent_dim") and hasattr(model, "data_dim") \
            and takes(model, "idx"):
        return model
    return TracedModel(model, inspect_model(model, x))


def validate_data(model, x):
    """``model.validate_data(x)`` when the model has that hook; otherwise a floating tensor with finite values."""
    hook = getattr(model, "validate_data", None) or getattr(getattr(model, "__self__", None), "validate_data", None)
    if callable(hook):
        return hook(x)
    if not torch.is_tensor(x) or not x.is_floating_point() or x.dim() < 2:
        raise ConfigError(f"the data must be a floating-point tensor of shape (N, ...); got "
                          f"{type(x).__name__ if not torch.is_tensor(x) else f'{x.dtype} of shape {tuple(x.shape)}'}")
    if not bool(torch.isfinite(x).all()):
        raise ConfigError("the data holds NaN or infinite values")
    return x


# ----- does a guide sample what the model needs? ----------------------------------------------------------

def check_sites(spec: ModelSpec, guide, x: torch.Tensor, idx=None, who: str | None = None,
                num_samples: int = 2) -> None:
    """Raise one clear :class:`ConfigError` unless ``guide`` samples exactly the model's latent sites ``spec``
    inside the data plate, with their event shapes and supports, and a log-density that splits over the rows
    of ``x`` (batch shape ``(samples, rows)`` at every site). Run before any estimator."""
    from ..estimators.traces import sample_plate

    who = who or f"the guide {getattr(guide, '__name__', type(guide).__name__)}"
    B, S = x.shape[0], num_samples
    if isinstance(guide, AutoContinuous):
        per_datum = _JOINT_FAMILIES.get(type(guide).__name__)
        raise ConfigError(f"{who} is a {type(guide).__name__}: it draws one joint site for all datapoints, outside the "
                          f"data plate {spec.plate!r}, so its q does not factor over datapoints and no per-datapoint "
                          "bound exists" + (f"; its per-datapoint version is the family {per_datum!r}" if per_datum
                                            else ""))
    with torch.no_grad(), quiet_frozen_modules(), sample_plate(S):
        try:
            tr = poutine.trace(lambda xb: call(guide, xb, idx)).get_trace(x)
        except ConfigError:
            raise
        except Exception as e:  # noqa: BLE001 - the user's code: say where it failed
            raise ConfigError(f"{who} failed on a batch of {B} under a plate of {S} samples ({type(e).__name__}: {e}); "
                              "a guide must broadcast over a leading sample dimension") from e
    sites = [(n, s) for n, s in _sample_sites(tr) if not _is_factor(s)]
    aux = {n for n, s in sites if s["infer"].get("is_auxiliary", False)}
    drawn = [n for n, s in sites if n not in aux]
    wanted = spec.names
    missing = [n for n in wanted if n not in drawn]
    extra = [n for n in drawn if n not in wanted]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"does not sample the model's latent site(s) {missing}")
        if extra:
            parts.append(f"samples {extra}, which the model does not draw (mark auxiliary sites "
                         "infer={'is_auxiliary': True})")
        raise ConfigError(f"{who} {' and '.join(parts)}; the model's latent sites are {wanted} (data plate "
                          f"{spec.plate!r})")
    site_of = dict(sites)
    for ls in spec.latents:
        s = site_of[ls.name]
        fn = s["fn"]
        if tuple(fn.event_shape) != tuple(ls.event_shape):
            raise ConfigError(f"{who} samples site {ls.name!r} with event shape {tuple(fn.event_shape)}; the model's "
                              f"is {tuple(ls.event_shape)}")
        if not _same_support(fn.support, ls.support) and not _delta_in_support(s, ls):
            raise ConfigError(f"{who} samples site {ls.name!r} on support {_support_text(fn.support)}; the model's is "
                              f"{_support_text(ls.support)}")
    for n, s in sites:
        lp_shape = tuple(s["fn"].batch_shape)
        try:
            ok = torch.broadcast_shapes(lp_shape, (S, B)) == (S, B) and len(lp_shape) <= 2
        except RuntimeError:
            ok = False
        if not ok or (lp_shape[-1:] != (B,)):
            raise ConfigError(f"{who} draws site {n!r} with batch shape {lp_shape}, outside the data plate "
                              f"{spec.plate!r} (expected ({S}, {B}) under {S} samples of {B} rows): a draw shared "
                              "by all datapoints does not factor over them, so no per-datapoint bound exists; a "
                              "joint autoguide's per-datapoint version is a family (pyro_vaegap.guides.auto)")
    if all(type(s["fn"]).__name__ == "Delta" for _, s in sites):
        raise ConfigError(f"{who} draws only point masses (Delta) at {[n for n, _ in sites]}, e.g. AutoDelta (MAP): q "
                          "has no density, so L[q] is -inf and no gap is defined")


def _delta_in_support(site, ls: LatentSite) -> bool:
    """A Delta site (how autoguides and flows emit a value transformed from an auxiliary draw) has the support
    ``real`` whatever the value's: it matches when its values lie in the model's support."""
    if type(site["fn"]).__name__ != "Delta":
        return False
    return bool(_strip(ls.support).check(site["value"]).all())
