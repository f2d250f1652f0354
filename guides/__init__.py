"""Posterior families, one module per family.

Each module registers its family with :func:`pyro_vaegap.guide.register_family`; every module in
this package is imported on first lookup, so dropping ``guides/my_family.py`` here is all it takes
for ``vaegap train --guide my_family`` and the gap report to find it. The contract a guide follows
is written once, in :mod:`pyro_vaegap.guide`.
"""
