r"""Generative models as Pyro model functions.

Every model here is a :class:`pyro.nn.PyroModule` whose ``forward(x, idx=None, num_data=None)`` is a
Pyro model with one local latent site ``"z"`` and one observed site ``"x"`` under the data plate
(see :func:`data_plate`):

.. math::

    z_n \sim \mathcal N(0, I_d), \qquad x_n \mid z_n \sim p_\theta(x_n \mid z_n), \qquad n = 1..N.

Conventions shared with the guides and the estimators:

* the data plate is ``pyro.plate("data", ..., dim=-1)``; estimators put samples, chains or particles
  in an outer plate at ``dim=-2``, so ``z`` has shape ``(S, N, d)`` there and every log-density is
  ``(S, N)``;
* densities keep every constant (the :math:`2\pi` terms of Gaussians), so all bounds are comparable;
* a model exposes ``latent_dim``, ``data_dim`` and :meth:`VAEModel.validate_data`, which is called on
  data entering training or evaluation (not on every trace: it would cost a pass over the data).

The package has one module per kind of data (:mod:`~pyro_vaegap.models.base`: the plate and the
base class; ``bernoulli``, ``gaussian``, ``linear_gaussian``, ``logistic``, ``pixelcnn``); everything public is
re-exported here, so ``from pyro_vaegap.models import BernoulliVAE`` is the way to import a model.

Nothing outside this package evaluates a model's density by hand: estimators trace these functions.
"""
from __future__ import annotations

from .networks import ACTIVATIONS, DenseMLP, decoder_net, mlp  # noqa: F401 - re-exported (older imports)
from .base import VAEModel, data_plate
from .bernoulli import BernoulliLogits, BernoulliVAE
from .gaussian import GAUSSIAN_VARIANCES, GaussianVAE, MSEGaussianVAE
from .linear_gaussian import LinearGaussian
from .logistic import PIXEL_LEVELS, DiscretizedLogistic, DiscretizedLogisticVAE, grid_to_pixels, pixels_to_grid
from .pixelcnn import PixelCNN, PixelCNNBernoulli, PixelCNNVAE

__all__ = ["data_plate", "VAEModel", "BernoulliLogits", "BernoulliVAE", "GAUSSIAN_VARIANCES", "GaussianVAE",
           "MSEGaussianVAE", "LinearGaussian", "PIXEL_LEVELS", "pixels_to_grid", "grid_to_pixels",
           "DiscretizedLogistic", "DiscretizedLogisticVAE", "PixelCNN", "PixelCNNBernoulli", "PixelCNNVAE"]
