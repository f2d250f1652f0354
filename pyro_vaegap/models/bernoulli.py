"""Binary data: the Bernoulli likelihood of an MLP (or convolutional) decoder."""
from __future__ import annotations

import torch
import pyro.distributions as dist
from torch import nn

from ..data import validate_binary
from .networks import ACTIVATIONS, decoder_net
from ..utils import check_choice, check_positive_int
from .base import VAEModel


class BernoulliLogits(dist.Bernoulli):
    r"""``Bernoulli(logits=l)`` whose ``log_prob`` is one fused expression, :math:`-\mathrm{softplus}((1-2x)\,l)`.

    For :math:`x\in\{0,1\}` this equals :math:`x\log\sigma(l) + (1-x)\log(1-\sigma(l))` exactly; it
    makes two passes over the ``(S, N, D)`` logits where torch's binary-cross-entropy path makes
    about six, and the likelihood is the bulk of the elementwise work of AIS and local optimization
    (``benchmarks/bench_gaps.py``). Values must be binary — models validate data on entry.
    """

    def log_prob(self, value):
        return -nn.functional.softplus((1 - 2 * value) * self.logits)


class BernoulliVAE(VAEModel):
    r"""MLP decoder with a Bernoulli likelihood: :math:`p(x\mid z)=\prod_i \mathrm{Bern}(x_i;\sigma(f_\theta(z))_i)`.

    :param data_dim: ``D`` (784 for MNIST).
    :param latent_dim: ``d`` (50 in Cremer et al. 2018).
    :param hidden: width of each decoder hidden layer (200).
    :param decoder_layers: number of hidden layers, 0, 2 or 4 (Cremer et al. Table 5 uses all three;
        0 is a linear decoder ``z → logits``).
    :param activation: ``"elu"`` (the paper), ``"tanh"`` or ``"relu"``.
    :param dense: a densely connected decoder (:class:`~pyro_vaegap.models.networks.DenseMLP`) of the same widths.
    :param arch: ``"mlp"`` or ``"conv"`` (:func:`~pyro_vaegap.models.networks.decoder_net`: fully connected
        layers, then transposed convolutions).
    """

    def __init__(self, data_dim: int = 784, latent_dim: int = 50, hidden: int = 200,
                 decoder_layers: int = 2, activation: str = "elu", dense: bool = False, arch: str = "mlp"):
        super().__init__(latent_dim, data_dim)
        self.hidden = check_positive_int("hidden", hidden)
        self.decoder_layers = check_positive_int("decoder_layers", decoder_layers, minimum=0)
        self.activation = check_choice("activation", activation, ACTIVATIONS)
        self.decoder = decoder_net(latent_dim, data_dim, 1, hidden, decoder_layers, activation, dense, arch)

    def likelihood(self, z):
        return BernoulliLogits(logits=self.decoder(z), validate_args=False).to_event(1)

    def pairwise_log_likelihood(self, z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        r""":math:`\log p(x_n\mid z_g)` for every pair of the rows of ``z`` ``(G, d)`` and ``x`` ``(N, D)``:
        shape ``(G, N)``, the decoder run once per :math:`z_g`.

        For binary :math:`x`, :math:`\log p(x\mid z) = \sum_i [x_i l_i - \mathrm{softplus}(l_i)]` with the
        logits :math:`l = f_\theta(z)` (:math:`\log\sigma(l) - \log\sigma(-l) = l`): one matrix product
        :math:`l\,x^\top` instead of :math:`G\times N\times D` elementwise terms. It equals
        :meth:`likelihood`'s ``log_prob`` (to float rounding); grid integration
        (:mod:`pyro_vaegap.estimators.grid`) uses it to score every datapoint against a whole grid of latents.
        """
        logits = self.decoder(z)
        return logits @ x.to(logits.dtype).T - nn.functional.softplus(logits).sum(-1, keepdim=True)

    def validate_data(self, x):
        x = validate_binary(x)
        self._check_width(x)
        return x
