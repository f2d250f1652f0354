"""pyro_vaegap: measure and reduce the inference gap of variational autoencoders with Pyro.

The library is organised as the pipeline it implements, one folder per layer:

``data`` → ``models`` (and their ``networks``) → ``guide`` contract (families live in the top-level ``guides``
package) → ``objectives`` (ELBOs, InfoVAE) → ``runs`` (what defines a run, its folder) and ``training`` (the
loop) → ``estimators`` (ELBO, IWAE, AIS, BDMC) → ``local`` (per-datapoint optimum q*) → ``gaps`` (the Cremer
et al. 2018 approximation / amortization gap report) → ``harness`` and ``studies`` (what the experiments share)
→ ``cli``.

Importing the package sets ``pyro.settings.set(module_local_params=True)`` so that every
:class:`pyro.nn.PyroModule` keeps its parameters as ordinary module attributes instead of in Pyro's
global parameter store: two guides with a parameter called ``loc`` must never share it.
"""
import pyro

pyro.settings.set(module_local_params=True)

__version__ = "0.1.0"
