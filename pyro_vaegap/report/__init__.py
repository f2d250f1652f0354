"""The gap report of Cremer, Li & Duvenaud (2018), and the published numbers it is set beside.

=============================================  ==================================================================
:mod:`~pyro_vaegap.report.config`              what an evaluation computes (:class:`~pyro_vaegap.report.config.GapConfig`)
:mod:`~pyro_vaegap.report.compute`             the approximation / amortization gaps of a model and guide
                                               (:func:`~pyro_vaegap.report.compute.gap_report`)
:mod:`~pyro_vaegap.report.pieces`              the evaluation in resumable, fingerprinted pieces
:mod:`~pyro_vaegap.report.render`              the report as JSON and as a markdown table with its diagnostics
                                               (:class:`~pyro_vaegap.report.render.GapReport`)
:mod:`~pyro_vaegap.report.paper_columns`       the published columns a report sets beside ours
:mod:`~pyro_vaegap.report.papers`              every published number the project compares with, one home
=============================================  ==================================================================

``pyro_vaegap.gaps`` (this package's module before it was split) is :mod:`~pyro_vaegap.report.compute`, which
still holds every name it held.
"""
import importlib

#: ``from pyro_vaegap.report import gap_report`` and the like, imported on first use (so that
#: ``python -m pyro_vaegap.report.papers`` runs the papers module without importing it first)
_NAMES = {"GapConfig": "config", "gap_report": "compute", "GapReport": "render"}
__all__ = list(_NAMES)


def __getattr__(name):
    if name in _NAMES:
        return getattr(importlib.import_module(f"{__name__}.{_NAMES[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
