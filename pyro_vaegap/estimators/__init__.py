r"""Estimators of :math:`\log p(x)`, of the ELBO and of the per-datapoint optimum :math:`q^*`, all read from the
Pyro model and guide through effect handlers (never a second copy of a density).

=============================================  ==================================================================
:mod:`~pyro_vaegap.estimators.traces`          the effect-handler plumbing: guide and model traces, importance
                                               log-weights, the joint's parts, prior and joint draws
:mod:`~pyro_vaegap.estimators.importance`      importance sampling: ELBO, IWAE bounds, ESS and PSIS
                                               :math:`\hat k` (:func:`importance_sample`); the prior as
                                               proposal (:func:`prior_importance`)
:mod:`~pyro_vaegap.estimators.ais`             annealed importance sampling with HMC, and BDMC
:mod:`~pyro_vaegap.estimators.grid`            exact answers for a 2-d latent by quadrature on a grid
:mod:`~pyro_vaegap.estimators.grid_windows`    where a 2-d posterior lives (windows for the adaptive quadrature)
:mod:`~pyro_vaegap.estimators.local`           per-datapoint optimization of a family: :math:`q^*`
:mod:`~pyro_vaegap.estimators.keyed_noise`     reparameterization noise keyed by (seed, datapoint, step)
:mod:`~pyro_vaegap.estimators.aggregate`       the aggregate posterior :math:`q(z)` of a Gaussian encoder: its
                                               moments and the mutual information :math:`I_q(x; z)`
=============================================  ==================================================================

``from pyro_vaegap.estimators import importance_sample`` (the names of
:mod:`~pyro_vaegap.estimators.importance`, this package's name before it held the layer) keeps working.
"""
from .importance import (PSIS_MIN_SAMPLES, ImportanceResult, PriorImportanceResult, importance_sample, iwae_bounds,
                         prior_importance)

__all__ = ["PSIS_MIN_SAMPLES", "ImportanceResult", "PriorImportanceResult", "importance_sample", "iwae_bounds",
           "prior_importance"]
