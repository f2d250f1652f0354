"""Where posterior families come from: the ``guides`` folder, entry points, and explicit registration.

Three sources, read once on first use (:func:`families`, :func:`get_family`):

1. every module of :mod:`pyro_vaegap.guides` — the repository's ``guides/`` folder, so dropping
   ``guides/my_family.py`` there is all it takes;
2. every module or object named by an entry point of the group ``pyro_vaegap.guides`` in an installed
   distribution, so a third-party package can ship families without touching this one::

       # the third party's pyproject.toml
       [project.entry-points."pyro_vaegap.guides"]
       my_family = "my_package.my_guides"          # a module holding Family objects
       other = "my_package.more:OTHER_FAMILY"     # or one Family (or a list of them)

3. :func:`register_family` called by user code (a notebook, a script); it replaces a family of the
   same name.

A plug-in module declares families by holding :class:`~pyro_vaegap.contract.guide.Family` objects at module
level (and, optionally, names that are *not* families with the reason, in a dict ``REFUSED_FAMILIES``:
asking for one gives that reason); guide modules import only the contract (:mod:`pyro_vaegap.contract.guide`),
never this registry. ``register_family(name, local=AutoNormal)`` with a Pyro autoguide class registers
its per-datum version (:mod:`pyro_vaegap.guides.auto`).

A plug-in that fails to import, or that declares a name another source already holds, is reported
once (a warning naming its file or entry point and the error) and left out; every other family stays
usable, and :func:`get_family` names the broken plug-ins when a family is not found.
"""
from __future__ import annotations

import importlib
import importlib.metadata
import pkgutil
import warnings
from types import ModuleType

from .guide import Family
from ..utils import ConfigError

ENTRY_POINT_GROUP = "pyro_vaegap.guides"

_FAMILIES: dict[str, Family] = {}
_SOURCES: dict[str, str] = {}      #: family name -> where it came from (for clash messages)
_BROKEN: dict[str, str] = {}       #: plug-in (file or entry point) -> one-line error
_REFUSED: dict[str, str] = {}      #: name -> why it is not a family (a module's REFUSED_FAMILIES)
_LOADED = False


class PluginWarning(UserWarning):
    """A plug-in family could not be loaded; the others are unaffected."""


def register_family(family: Family | str, *, amortized: type | None = None, local: type | None = None,
                    description: str = "") -> Family:
    """Register ``family`` (a :class:`Family`, or a name with the guide classes) for this process.

    Explicit registration replaces a family of the same name (loaded plug-ins included).
    """
    if not isinstance(family, Family):
        family = Family(family, amortized=amortized, local=local, description=description)
    load_plugins()
    _FAMILIES[family.name] = family
    _SOURCES[family.name] = "register_family"
    return family


def _declared(obj) -> list[Family]:
    """The families an entry point's object or a plug-in module declares."""
    if isinstance(obj, Family):
        return [obj]
    if isinstance(obj, ModuleType):
        return [v for v in vars(obj).values() if isinstance(v, Family)]
    if isinstance(obj, (list, tuple)) and all(isinstance(v, Family) for v in obj):
        return list(obj)
    raise TypeError(f"expected a module, a Family or a list of Family objects, got {type(obj).__name__}")


def _add(families: list[Family], source: str) -> None:
    for fam in families:
        if fam.name in _FAMILIES and _FAMILIES[fam.name] is not fam:
            _broken(source, f"family {fam.name!r} is already provided by {_SOURCES[fam.name]}; keeping that one")
            continue
        _FAMILIES[fam.name] = fam
        _SOURCES[fam.name] = source


def _broken(source: str, message: str) -> None:
    _BROKEN[source] = message
    warnings.warn(f"plug-in {source} left out: {message}", PluginWarning, stacklevel=3)


def load_plugins() -> None:
    """Collect the families of ``pyro_vaegap.guides`` and of the entry points, once per process."""
    global _LOADED
    if _LOADED:
        return
    _LOADED = True
    from .. import guides

    for info in sorted(pkgutil.iter_modules(guides.__path__), key=lambda i: i.name):
        source = f"guides/{info.name}.py"
        try:
            module = importlib.import_module(f"{guides.__name__}.{info.name}")
        except Exception as e:  # noqa: BLE001 - any error in a user's file: report it and go on
            _broken(source, f"{type(e).__name__}: {e}")
            continue
        _add(_declared(module), source)
        _REFUSED.update(getattr(module, "REFUSED_FAMILIES", {}))
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        source = f"entry point {ep.name} = {ep.value!r}"
        try:
            found = _declared(ep.load())
        except Exception as e:  # noqa: BLE001
            _broken(source, f"{type(e).__name__}: {e}")
            continue
        _add(found, source)


def families() -> dict[str, Family]:
    """All available families by name (plug-ins loaded)."""
    load_plugins()
    return dict(_FAMILIES)


def broken_plugins() -> dict[str, str]:
    """Plug-ins left out, with the reason (plug-ins loaded)."""
    load_plugins()
    return dict(_BROKEN)


def get_family(name: str) -> Family:
    """The family called ``name``; a clear error lists the known names (and broken plug-ins) otherwise."""
    fams = families()
    if name not in fams and name in _REFUSED:
        raise ConfigError(f"guide family {name!r} is not available: {_REFUSED[name]}")
    if name not in fams:
        broken = (f"; plug-ins left out: " + "; ".join(f"{k} ({v})" for k, v in _BROKEN.items())) if _BROKEN else ""
        raise ConfigError(f"unknown guide family {name!r}: choose one of {sorted(fams)}{broken}")
    return fams[name]


def _reset() -> None:
    """Forget everything loaded (tests use it to load a changed set of plug-ins)."""
    global _LOADED
    _FAMILIES.clear()
    _SOURCES.clear()
    _BROKEN.clear()
    _REFUSED.clear()
    _LOADED = False
