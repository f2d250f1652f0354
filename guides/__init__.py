"""Posterior families, one module per family (installed as ``pyro_vaegap.guides``).

Each module declares its family as a module-level :class:`pyro_vaegap.contract.guide.Family`; the registry
(:mod:`pyro_vaegap.contract.registry`) collects every module of this package on first lookup, so dropping
``guides/my_family.py`` here is all it takes for ``vaegap train --guide my_family`` and the gap
report to find it. The contract a guide follows is written once, in :mod:`pyro_vaegap.contract.guide`.
"""
