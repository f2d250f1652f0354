"""A model trained anywhere, evaluated without ``vaegap train``: ``vaegap gaps --model MODULE:FUNCTION``.

``FUNCTION()`` (no arguments) builds the user's model and guide, in one of three shapes:

* an object with ``model`` and ``guide`` methods — e.g. the ``VAE`` module of Pyro's VAE tutorial;
* a pair ``(model, guide)`` of Pyro callables;
* a dict ``{"model": ..., "guide": ...}``.

``MODULE`` is a dotted module name (importable from the current folder or the installed packages) or a path to
a ``.py`` file. ``--checkpoint FILE`` then loads the trained weights: a ``state_dict`` of the built
``nn.Module`` (``torch.save(vae.state_dict(), FILE)``; for a pair, of the model's module) or Pyro's parameter
store (``pyro.get_param_store().save(FILE)``). Nothing else is asked of the code: the sites, data plate, shapes
and supports are read from the model's trace (:mod:`pyro_vaegap.contract`).
"""
from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path

import pyro
import torch
from torch import nn

from .model import modules_of
from ..utils import ConfigError


def check_ref(ref) -> None:
    """Refuse a ``--model`` value that is not ``MODULE:FUNCTION`` (before anything is loaded)."""
    if not isinstance(ref, str) or ref.count(":") != 1 or not all(ref.split(":")):
        raise ConfigError(f"--model {ref!r} is not allowed: expected MODULE:FUNCTION, e.g. mypkg.vae:build or "
                          "path/to/vae.py:build")


def load_callable(ref: str):
    """The object named by ``"pkg.module:name"`` or ``"path/to/file.py:name"``."""
    check_ref(ref)
    where, name = ref.split(":")
    try:
        if where.endswith(".py"):
            path = Path(where)
            if not path.is_file():
                raise ConfigError(f"--model {ref!r}: no such file {where!r}")
            spec = importlib.util.spec_from_file_location(path.stem, path)
            module = importlib.util.module_from_spec(spec)
            sys.modules.setdefault(path.stem, module)
            spec.loader.exec_module(module)
        else:
            if "" not in sys.path and str(Path.cwd()) not in sys.path:
                sys.path.insert(0, str(Path.cwd()))  # as `python -m` would: the user's package in this folder
            module = importlib.import_module(where)
    except ConfigError:
        raise
    except Exception as e:  # noqa: BLE001 - the user's code: say what failed
        raise ConfigError(f"--model {ref!r}: importing {where!r} failed ({type(e).__name__}: {e})") from e
    if not hasattr(module, name):
        raise ConfigError(f"--model {ref!r}: {where!r} has no {name!r}")
    return getattr(module, name)


def split_model_guide(obj):
    """``(model, guide, module)`` from what the user's builder returned (module docstring); ``module`` is the
    ``nn.Module`` that holds the weights (None when the parameters live in Pyro's param store)."""
    if isinstance(obj, dict) and {"model", "guide"} <= set(obj):
        model, guide = obj["model"], obj["guide"]
    elif isinstance(obj, (tuple, list)) and len(obj) == 2:
        model, guide = obj
    elif callable(getattr(obj, "model", None)) and callable(getattr(obj, "guide", None)):
        model, guide = obj.model, obj.guide
    else:
        raise ConfigError(f"the --model function returned {type(obj).__name__}; expected an object with model and "
                          "guide methods, a pair (model, guide) or a dict {'model': ..., 'guide': ...}")
    if not (callable(model) and callable(guide)):
        raise ConfigError("the --model function's model and guide must be callables model(x), guide(x)")
    module = obj if isinstance(obj, nn.Module) else (modules_of(model) or [None])[0]
    return model, guide, module


def load_weights(path, module) -> None:
    """Load ``path`` into ``module`` (a ``state_dict``) or into Pyro's param store (a saved store)."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"--checkpoint {str(path)!r}: no such file")
    try:
        state = torch.load(p, map_location="cpu", weights_only=False)  # the user's own file
    except Exception as e:  # noqa: BLE001
        raise ConfigError(f"--checkpoint {str(path)!r} is not a file written by torch.save ({type(e).__name__})") from e
    if isinstance(state, dict) and {"params", "constraints"} <= set(state):
        pyro.get_param_store().set_state(state)
        return
    if not isinstance(state, dict) or module is None:
        raise ConfigError(f"--checkpoint {str(path)!r} holds {type(state).__name__}; expected the state_dict of the "
                          "built module or a saved Pyro param store")
    try:
        module.load_state_dict(state)
    except RuntimeError as e:
        first = str(e).strip().splitlines()
        raise ConfigError(f"--checkpoint {str(path)!r} does not fit the built model: "
                          f"{' '.join(line.strip() for line in first[:3])}") from e


def build(ref: str, checkpoint=None, device="cpu"):
    """``(model, guide)`` built by the user's function ``ref``, with ``checkpoint``'s weights, on ``device``."""
    builder = load_callable(ref)
    if not callable(builder):
        raise ConfigError(f"--model {ref!r} is not callable")
    try:
        obj = builder()
    except Exception as e:  # noqa: BLE001
        raise ConfigError(f"--model {ref!r}: calling it failed ({type(e).__name__}: {e})") from e
    model, guide, module = split_model_guide(obj)
    if checkpoint is not None:
        load_weights(checkpoint, module)
    if module is not None:
        module.to(device).eval()
    return model, guide
