"""pyro_vaegap: measure and reduce the inference gap of variational autoencoders with Pyro.

The library is organised as the pipeline it implements, one folder per layer:

==============================  ===========================================================================
``data``                        data sets, loaded by name
``models``                      generative models as Pyro models, and their ``networks``
``contract``                    what the library reads from a Pyro model and what a guide provides (the
                                :class:`~pyro_vaegap.contract.guide.Guide` bases, posterior families and
                                their registry); the families live in the top-level ``guides`` package
``objectives``                  training objectives: Pyro's ELBOs, InfoVAE
``runs``, ``training``          what defines a run and its folder; the training loop
``estimators``                  traces, importance sampling (ELBO, IWAE), AIS and BDMC, grid quadrature,
                                per-datapoint optimization (q*), the aggregate posterior
``report``                      the Cremer et al. (2018) approximation / amortization gap report, and the
                                published numbers it is set beside (``report.papers``)
``harness``, ``studies``        what the experiments (top-level ``experiments``) share
``tutorial``                    constructions of R. Yu's tutorial (Σ-VAE, channel capacity, bits-back coding)
``pretrained``, ``cli``         shipped models; the ``vaegap`` command
==============================  ===========================================================================

Modules that moved into a layer keep their old names (``pyro_vaegap.ais``, ``pyro_vaegap.gaps``, ...): the old
name imports the very same module object (:data:`MOVED`).

Importing the package sets ``pyro.settings.set(module_local_params=True)`` so that every
:class:`pyro.nn.PyroModule` keeps its parameters as ordinary module attributes instead of in Pyro's
global parameter store: two guides with a parameter called ``loc`` must never share it.
"""
import importlib
import importlib.abc
import importlib.util
import sys

import pyro

pyro.settings.set(module_local_params=True)

__version__ = "0.1.0"

#: old dotted names of modules that moved into a layer package -> their home; importing the old name gives the
#: home's module object itself (so a monkeypatch or an isinstance check through either name sees the same thing)
MOVED = {f"{__name__}.{old}": f"{__name__}.{new}" for old, new in {
    "networks": "models.networks",
    "infovae": "objectives.infovae",
    "distributed": "training.distributed",
    "sweep": "harness.sweep",
    "guide": "contract.guide",
    "registry": "contract.registry",
    "user_model": "contract.user_model",
    "traces": "estimators.traces",
    "ais": "estimators.ais",
    "grid": "estimators.grid",
    "grid_windows": "estimators.grid_windows",
    "local": "estimators.local",
    "keyed_noise": "estimators.keyed_noise",
    "aggregate": "estimators.aggregate",
    "gaps": "report.compute",
    "papers": "report.papers",
    "compression": "tutorial.compression",
}.items()}


class _MovedModuleLoader(importlib.abc.Loader):
    """Loads an old name as the module at its new home (imported once, under its new name)."""

    def __init__(self, home: str):
        self.home = home

    def create_module(self, spec):
        module = importlib.import_module(self.home)
        self._home_spec = module.__spec__
        return module

    def exec_module(self, module):
        module.__spec__ = self._home_spec  # the import system set the alias's spec; the module keeps its own

    def get_code(self, fullname):
        """For ``python -m OLD.NAME``: run the home module as ``__main__`` (under its own package, so its relative
        imports resolve)."""
        return compile(f"import runpy\nrunpy.run_module({self.home!r}, run_name='__main__', alter_sys=True)\n",
                       f"<{fullname}: moved to {self.home}>", "exec")


class _MovedModuleFinder(importlib.abc.MetaPathFinder):
    """Answers the old names of :data:`MOVED` (no file is left at an old path)."""

    def find_spec(self, fullname, path=None, target=None):
        home = MOVED.get(fullname)
        if home is None:
            return None
        return importlib.util.spec_from_loader(fullname, _MovedModuleLoader(home))


if not any(isinstance(f, _MovedModuleFinder) for f in sys.meta_path):
    sys.meta_path.insert(0, _MovedModuleFinder())
