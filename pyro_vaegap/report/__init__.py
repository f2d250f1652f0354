"""The gap report of Cremer, Li & Duvenaud (2018), and the published numbers it is set beside.

=============================================  ==================================================================
:mod:`~pyro_vaegap.report.compute`             the approximation / amortization gap report of a model and guide
                                               (:func:`~pyro_vaegap.report.compute.gap_report`)
:mod:`~pyro_vaegap.report.papers`              every published number the project compares with, one home
=============================================  ==================================================================
"""
